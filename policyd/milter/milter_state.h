// What one MTA connection holds between packets, bounded: the macros of
// each protocol stage (replaced, never merged) and the size, lines and
// headers of the message under way. Sees every packet before the
// connection acts on it and says when the connection must close or the
// message be refused. Pure: no sockets, no Runtime, no log; it must never
// keep anything of one SMTP session for the next (THREATS.md, milter).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "mailcore/event/event.h"
#include "mailcore/session/limits.h"

namespace mailhook::policyd::milter {

// The per-connection limits (--milter-max-* flags, which take these).
struct StateLimits {
  std::size_t max_macros = 1000;                // name/value pairs held, all stages
  std::size_t max_macro_bytes = 256 * 1024;     // their names and values, all stages
  std::uint64_t max_message_size = session::Limits{}.max_message_size;  // headers and body (the front's default)
  std::size_t max_line = 1024 * 1024;           // a body line, its CRLF included
  std::size_t max_headers = 1000;               // header fields of one message
  std::size_t max_header_bytes = 1024 * 1024;   // their bytes ("Name: value\r\n")
};

// Why a message is refused; the first limit it crossed.
enum class Refusal : std::uint8_t { None, MessageTooBig, LineTooLong, TooManyHeaders, HeadersTooBig };

// The reply a refused message gets (552 5.3.4 as the front answers a
// message past its size; 550 5.6.0 for a line past the limit) and the flag
// that set the limit, for the log.
Reply refusal_reply(Refusal r);
std::string_view refusal_flag(Refusal r);

class ConnectionState {
 public:
  explicit ConnectionState(const StateLimits& limits) : limits_(limits) {}

  struct Step {
    bool close = false;             // the MTA broke a connection limit: end the connection
    std::string_view why;           // then the flag it crossed, for the log
    Refusal refused_now = Refusal::None;  // this packet made the message refused
  };
  // Every packet, before the connection acts on it.
  Step take(char letter, std::string_view data);

  // The message ended (its end-of-body was answered): the next starts afresh.
  void end_message();

  // A macro as scripts see it: the latest stage that set it wins; nullptr
  // when no stage of this session did.
  const std::string* macro(std::string_view name) const;
  // True once after the macros changed (a stage replaced, a session ended).
  bool take_changed() {
    const bool c = changed_;
    changed_ = false;
    return c;
  }
  std::size_t macro_count() const { return macro_count_; }
  std::size_t macro_bytes() const { return macro_bytes_; }

  Refusal refusal() const { return refusal_; }
  std::uint64_t message_size() const { return message_size_; }
  std::size_t headers() const { return headers_; }

 private:
  Step take_macros(std::string_view data);
  void drop_stage(char stage);
  void new_session();
  void add_header(std::string_view data);
  void add_body(std::string_view bytes);
  void refuse(Refusal r);

  StateLimits limits_;
  // Per stage letter (the command the macros come before: 'C', 'H', 'M',
  // 'R', 'T', 'N', 'E', ...), the macros it last sent.
  std::map<char, std::map<std::string, std::string>> stages_;
  std::size_t macro_count_ = 0, macro_bytes_ = 0;
  bool connect_macros_fresh_ = false;  // 'C' macros came after the last session ended
  bool changed_ = false;
  // The message under way.
  std::uint64_t message_size_ = 0;
  std::size_t headers_ = 0, header_bytes_ = 0;
  std::size_t line_ = 0;      // bytes of the body line under way, without its line end
  bool after_cr_ = false;     // the last body byte was CR (a CRLF may span two packets)
  Refusal refusal_ = Refusal::None;
  Refusal tripped_ = Refusal::None;  // set by this packet
};

}  // namespace mailhook::policyd::milter
