// DATA decoder: a byte state machine with a fast path that copies runs of
// ordinary line bytes at once. Only CRLF "." CRLF ends the data (RFC 5321
// 4.1.1.4); every bare CR or LF is a fault, so no smuggled end of data.
#include "mailcore/smtp/dot_decoder.h"

namespace mailhook::smtp {

enum class DotDecoder::State : std::uint8_t {
  LineStart,  // at the start of a line (after CRLF, or the first byte)
  Dot,        // saw "." at the start of a line
  DotCr,      // saw ".\r" at the start of a line
  InLine,     // inside a line
  Cr,         // saw "\r" inside a line (or after a stuffed dot)
};

namespace {
using S = DotDecoder::State;
}

DotDecoder::DotDecoder(std::uint64_t max_size, std::uint64_t max_line)
    : max_size_(max_size), max_line_(max_line), state_(static_cast<int>(S::LineStart)) {}

std::size_t DotDecoder::feed(std::string_view in, std::string& out) {
  auto state = static_cast<S>(state_);
  std::size_t i = 0;
  const std::size_t n = in.size();
  auto emit = [&](std::string_view bytes) {
    size_ += bytes.size();
    if (max_size_ != 0 && size_ > max_size_ && fault_ == Fault::None) fault_ = Fault::TooBig;
    if (fault_ == Fault::None) out.append(bytes);
  };
  auto set_fault = [&](Fault f) {
    if (fault_ == Fault::None) fault_ = f;
  };
  while (i < n && !done_) {
    const char c = in[i];
    switch (state) {
      case S::InLine: {
        // Fast path: the run up to the next CR, LF or NUL.
        std::size_t j = i;
        while (j < n && in[j] != '\r' && in[j] != '\n' && in[j] != '\0') ++j;
        if (j > i) {
          line_ += j - i;
          if (max_line_ != 0 && line_ + 2 > max_line_) set_fault(Fault::LineTooLong);
          emit(in.substr(i, j - i));
          i = j;
          continue;
        }
        if (c == '\r') {
          state = S::Cr;
        } else if (c == '\n') {
          set_fault(Fault::BareLineEnd);
          emit("\n");
        } else {
          set_fault(Fault::NulByte);
        }
        ++i;
        break;
      }
      case S::Cr:
        if (c == '\n') {
          emit("\r\n");
          line_ = 0;
          state = S::LineStart;
          ++i;
        } else {
          set_fault(Fault::BareLineEnd);
          emit("\r");
          state = S::InLine;  // reprocess c inside the line
        }
        break;
      case S::LineStart:
        if (c == '.') {
          state = S::Dot;
          ++i;
        } else {
          state = S::InLine;
        }
        break;
      case S::Dot:
        if (c == '\r') {
          state = S::DotCr;
          ++i;
        } else {
          state = S::InLine;  // RFC 5321 4.5.2: drop the stuffed dot
        }
        break;
      case S::DotCr:
        if (c == '\n') {
          done_ = true;
          ++i;
        } else {
          // ".\r" then not LF: a line "." followed by a bare CR.
          set_fault(Fault::BareLineEnd);
          emit("\r");
          state = S::InLine;
        }
        break;
    }
  }
  state_ = static_cast<int>(state);
  return i;
}

}  // namespace mailhook::smtp
