// SMTP command-line parser (RFC 5321 4.1): one line in, one Command out.
// Pure function over bytes: no I/O, no clock, no allocation beyond the
// result. Never trusts its input; every malformed line is a value, not
// an exception.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "mailcore/event/event.h"

namespace mailhook::smtp {

// RFC 5321 4.5.3.1.4: a command line is at most 512 octets incl. CRLF.
inline constexpr std::size_t kMaxCommandLine = 512;

enum class Verb : std::uint8_t {
  Helo, Ehlo, Mail, Rcpt, Data, Rset, Noop, Quit, Help, Vrfy, Expn,
  Starttls, Auth, Xclient, Bdat,
  Unknown,  // anything else: the verb word is in Command::verb_text
};

enum class ParseError : std::uint8_t {
  None,
  Syntax,         // 501 5.5.4: the verb is known, its arguments are not
  MissingArg,     // 501 5.5.4: HELO/EHLO/MAIL/RCPT/VRFY without argument
  ExtraArg,       // 501 5.5.4: DATA/RSET/QUIT/STARTTLS with argument
  BadAddress,     // 501 5.1.3 (RCPT) / 501 5.1.7 (MAIL)
  BadParameter,   // 555 5.5.4: malformed ESMTP parameter
  NulByte,        // 500 5.5.2: a NUL in the line
  ControlChar,    // 500 5.5.2: a bare CR or another control character
};

struct Command {
  Verb verb = Verb::Unknown;
  std::string verb_text;      // the verb as the client wrote it
  std::string argument;       // everything after the verb and one space, trimmed
  std::string address;        // MAIL/RCPT: between < and >, source route removed
  std::vector<Parameter> parameters;  // MAIL/RCPT ESMTP parameters
  ParseError error = ParseError::None;
};

// Parses one command line given without its CRLF (a CR left inside is a
// bare CR: refused, like every control character but HT; RFC 5321 2.3.8
// and 4.1.1 allow none in a command, and a bare CR must not reach a reply,
// a Received header or the spool envelope). Verbs are
// case-insensitive; "MAIL FROM:<a>" and "MAIL FROM: <a>" are both taken
// (RFC 5321 4.1.1.2 forbids the space, but real clients send it).
Command parse_command(std::string_view line);

// ESMTP parameters (RFC 5321 4.1.2), the one parser of them: the front's
// MAIL/RCPT lines, the milter's MAIL/RCPT arguments and the policy's
// added recipients all go through these.
// One parameter as sent ("SIZE=10", "SMTPUTF8"): the keyword upper case
// (keywords are case-insensitive), the value after the first "=" as it
// is ("" without one). Checks nothing: is_valid_parameter does.
Parameter split_parameter(std::string_view word);
// An esmtp-keyword (ALPHA / DIGIT, then also "-"), and a non-empty value
// when there is an "=".
bool is_valid_parameter(std::string_view word);
// Parameters separated by spaces ("NOTIFY=NEVER ORCPT=rfc822;a@b"), each
// as split_parameter gives it; runs of spaces are one separator.
std::vector<Parameter> split_parameters(std::string_view text);

// RFC 5321 4.1.2 Mailbox, loosely: local@domain, domain with a dot or an
// address literal; the empty path "<>" is valid for MAIL only.
bool is_valid_mailbox(std::string_view address);

}  // namespace mailhook::smtp

namespace mailhook::smtp {
// The default reply for a command that failed to parse.
Reply parse_error_reply(const Command& command);
}  // namespace mailhook::smtp
