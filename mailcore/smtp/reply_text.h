// The one reply validator (ARCHITECTURE pattern 3): used by policyd on
// every reply a script returns and by the front on every reply it gets
// from policyd. Pure functions: no I/O, no logging.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "mailcore/event/event.h"

namespace mailhook::smtp {

// RFC 5321 4.5.3.1.5: a reply line is at most 512 octets incl. CRLF.
inline constexpr std::size_t kMaxReplyLine = 512;
// More lines than this is not a reply anyone means to send.
inline constexpr std::size_t kMaxReplyLines = 100;

enum class ReplyError : std::uint8_t {
  None,
  Empty,             // no text at all
  BadCode,           // not three digits 2xx..5xx
  CodeMismatch,      // lines of a multi-line reply disagree on the code
  BadSeparator,      // a char other than ' ' or '-' after the code
  BadContinuation,   // '-' on the last line, or ' ' before the last
  BadEnhancedCode,   // enhanced code class differs from the reply class
  ControlChar,       // a CR, LF or NUL inside a line's text
  LineTooLong,
  TooManyLines,
};

struct ParsedReply {
  std::optional<Reply> reply;
  ReplyError error = ReplyError::None;
};

// Parses a reply as a script writes it: "550 5.7.1 no\r\n", multi-line
// "250-a\r\n250 b\r\n". A missing final CRLF is accepted (SPEC); a CR or
// LF anywhere else than in a CRLF line end is an error, so a smuggled
// line end never reaches the wire. The enhanced code (RFC 3463) is split
// off when the first line has one.
ParsedReply parse_reply(std::string_view text);

// Checks a structured Reply (from the wire or built in code).
ReplyError validate(const Reply& reply);

std::string_view reply_error_text(ReplyError e);

}  // namespace mailhook::smtp
