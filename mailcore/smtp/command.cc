// SMTP command parser: verb lookup, then per-verb argument rules (RFC 5321
// 4.1.1 and 4.1.2). Total: any byte string gives a Command.
#include "mailcore/smtp/command.h"

#include "mailcore/smtp/ascii.h"

#include <array>
#include <utility>

namespace mailhook::smtp {
namespace {

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

constexpr std::array<std::pair<std::string_view, Verb>, 15> kVerbs{{
    {"HELO", Verb::Helo}, {"EHLO", Verb::Ehlo}, {"MAIL", Verb::Mail}, {"RCPT", Verb::Rcpt},
    {"DATA", Verb::Data}, {"RSET", Verb::Rset}, {"NOOP", Verb::Noop}, {"QUIT", Verb::Quit},
    {"HELP", Verb::Help}, {"VRFY", Verb::Vrfy}, {"EXPN", Verb::Expn}, {"STARTTLS", Verb::Starttls},
    {"AUTH", Verb::Auth}, {"XCLIENT", Verb::Xclient}, {"BDAT", Verb::Bdat},
}};

// RFC 5321 4.1.2 esmtp-keyword: ALPHA / DIGIT then ALPHA / DIGIT / "-".
bool is_keyword(std::string_view k) {
  if (k.empty()) return false;
  for (std::size_t i = 0; i < k.size(); ++i) {
    const char c = k[i];
    const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && !(i > 0 && c == '-')) return false;
  }
  return true;
}

// "FROM:<a@b> SIZE=10" after the verb: fills address and parameters.
void parse_path(std::string_view arg, std::string_view tag, Command& cmd) {
  if (!istarts_with(arg, tag)) {
    cmd.error = ParseError::Syntax;
    return;
  }
  arg = trim(arg.substr(tag.size()));  // tolerate "FROM: <a>"
  if (arg.empty() || arg.front() != '<') {
    cmd.error = arg.empty() ? ParseError::MissingArg : ParseError::BadAddress;
    return;
  }
  const std::size_t close = arg.find('>');
  if (close == std::string_view::npos) {
    cmd.error = ParseError::BadAddress;
    return;
  }
  std::string_view path = arg.substr(1, close - 1);
  // RFC 5321 4.1.2: a source route "@a,@b:" is accepted and ignored.
  if (!path.empty() && path.front() == '@') {
    const std::size_t colon = path.find(':');
    if (colon == std::string_view::npos) {
      cmd.error = ParseError::BadAddress;
      return;
    }
    path.remove_prefix(colon + 1);
  }
  cmd.address = std::string(path);
  std::string_view rest = trim(arg.substr(close + 1));
  while (!rest.empty()) {
    const std::size_t sp = rest.find(' ');
    const std::string_view param = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : trim(rest.substr(sp + 1));
    if (!is_valid_parameter(param)) {
      cmd.error = ParseError::BadParameter;
      return;
    }
    cmd.parameters.push_back(split_parameter(param));
  }
  const bool empty_ok = cmd.verb == Verb::Mail;
  if (cmd.address.empty() ? !empty_ok : !is_valid_mailbox(cmd.address)) {
    // RFC 5321 4.5.1: <postmaster> without a domain is a valid recipient.
    if (!(cmd.verb == Verb::Rcpt && iequals(cmd.address, "postmaster"))) cmd.error = ParseError::BadAddress;
  }
}

}  // namespace

Parameter split_parameter(std::string_view word) {
  const std::size_t eq = word.find('=');
  // RFC 5321 4.1.2: esmtp-keywords are case-insensitive; keep them upper case.
  return Parameter{ascii_upper(std::string(word.substr(0, eq))),
                   eq == std::string_view::npos ? std::string() : std::string(word.substr(eq + 1))};
}

bool is_valid_parameter(std::string_view word) {
  const std::size_t eq = word.find('=');
  return is_keyword(word.substr(0, eq)) && (eq == std::string_view::npos || eq + 1 < word.size());
}

std::vector<Parameter> split_parameters(std::string_view text) {
  std::vector<Parameter> out;
  while (!text.empty()) {
    const std::size_t sp = text.find(' ');
    const std::string_view word = text.substr(0, sp);
    if (!word.empty()) out.push_back(split_parameter(word));
    text = sp == std::string_view::npos ? std::string_view{} : text.substr(sp + 1);
  }
  return out;
}

bool is_valid_mailbox(std::string_view address) {
  const std::size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 >= address.size()) return false;
  const std::string_view local = address.substr(0, at);
  const std::string_view domain = address.substr(at + 1);
  if (local.size() > 64 && local.front() != '"') return false;  // RFC 5321 4.5.3.1.1
  for (char c : address) {
    if (static_cast<unsigned char>(c) <= ' ' && !(c == ' ' && local.front() == '"')) return false;
    if (c == '<' || c == '>') return false;
  }
  if (domain.front() == '[') return domain.back() == ']';  // address literal
  if (domain.size() > 255 || domain.front() == '.' || domain.back() == '.' ||
      domain.find("..") != std::string_view::npos) {
    return false;
  }
  return true;
}

Command parse_command(std::string_view line) {
  Command cmd;
  if (line.find('\0') != std::string_view::npos) {
    cmd.error = ParseError::NulByte;
    return cmd;
  }
  for (const char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      cmd.error = ParseError::ControlChar;
      return cmd;
    }
  }
  line = trim(line);
  const std::size_t sp = line.find(' ');
  const std::string_view verb = line.substr(0, sp);
  cmd.verb_text = std::string(verb);
  const std::string_view arg = sp == std::string_view::npos ? std::string_view{} : trim(line.substr(sp + 1));
  cmd.argument = std::string(arg);
  for (const auto& [name, v] : kVerbs) {
    if (iequals(verb, name)) cmd.verb = v;
  }
  switch (cmd.verb) {
    case Verb::Helo:
    case Verb::Ehlo:
    case Verb::Vrfy:
    case Verb::Expn:
    case Verb::Auth:
    case Verb::Xclient:
    case Verb::Bdat:
      if (arg.empty()) cmd.error = ParseError::MissingArg;
      break;
    case Verb::Mail:
      parse_path(arg, "FROM:", cmd);
      break;
    case Verb::Rcpt:
      parse_path(arg, "TO:", cmd);
      break;
    case Verb::Data:
    case Verb::Rset:
    case Verb::Quit:
    case Verb::Starttls:
      if (!arg.empty()) cmd.error = ParseError::ExtraArg;
      break;
    case Verb::Noop:
    case Verb::Help:
    case Verb::Unknown:
      break;
  }
  return cmd;
}

Reply parse_error_reply(const Command& command) {
  switch (command.error) {
    case ParseError::None: return Reply{250, "2.0.0", {"OK"}};
    case ParseError::Syntax: return Reply{501, "5.5.4", {"Syntax error in parameters or arguments"}};
    case ParseError::MissingArg: return Reply{501, "5.5.4", {"Argument required"}};
    case ParseError::ExtraArg: return Reply{501, "5.5.4", {"No arguments allowed"}};
    case ParseError::BadAddress:
      return command.verb == Verb::Mail ? Reply{501, "5.1.7", {"Bad sender address syntax"}}
                                        : Reply{501, "5.1.3", {"Bad recipient address syntax"}};
    case ParseError::BadParameter: return Reply{555, "5.5.4", {"Malformed MAIL/RCPT parameter"}};
    case ParseError::NulByte: return Reply{500, "5.5.2", {"NUL octet in command line"}};
    case ParseError::ControlChar: return Reply{500, "5.5.2", {"Bare CR or control character in command line"}};
  }
  return Reply{500, "5.5.2", {"Syntax error"}};
}

}  // namespace mailhook::smtp
