// DATA decoder (RFC 5321 4.5.2): turns the bytes a client sends after 354
// into the message it meant: lines dot-unstuffed, CRLF kept, the final
// "<CRLF>.<CRLF>" detected. Refuses (but keeps reading to the end) a
// message containing a bare CR or bare LF (SMTP smuggling,
// CVE-2023-51764) or a NUL. Pure and incremental: bytes in, bytes out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mailhook::smtp {

class DotDecoder {
 public:
  enum class Fault : std::uint8_t {
    None,
    BareLineEnd,  // a CR not followed by LF or a LF not preceded by CR
    NulByte,      // a NUL octet
    TooBig,       // more than max_size octets of message
    LineTooLong,  // a line longer than max_line octets, CRLF included
  };

  // 0: no limit, for either.
  explicit DotDecoder(std::uint64_t max_size = 0, std::uint64_t max_line = 0);

  // Consumes bytes; appends decoded message bytes to `out` (nothing once a
  // fault is set or past the size limit). Returns how many input bytes were
  // consumed: all of them, or fewer when the end-of-data line was found
  // (the rest belongs to the next command, e.g. a pipelined QUIT).
  std::size_t feed(std::string_view in, std::string& out);

  bool done() const { return done_; }
  Fault fault() const { return fault_; }
  // Octets of decoded message seen so far (also those past the limit).
  std::uint64_t size() const { return size_; }

  enum class State : std::uint8_t;  // defined in dot_decoder.cc

 private:
  std::uint64_t max_size_;
  std::uint64_t max_line_;
  std::uint64_t size_ = 0;
  std::uint64_t line_ = 0;  // decoded octets of the current line, CRLF excluded
  int state_;
  bool done_ = false;
  Fault fault_ = Fault::None;
};

}  // namespace mailhook::smtp
