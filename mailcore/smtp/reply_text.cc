// Reply parsing and validation: the single gate every reply passes, from a
// script (policyd) or from policyd (front). Pure; no logging.
#include "mailcore/smtp/reply_text.h"

#include <vector>

namespace mailhook::smtp {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool valid_code_text(std::string_view s) {
  return s.size() == 3 && s[0] >= '2' && s[0] <= '5' && is_digit(s[1]) && is_digit(s[2]);
}

bool has_control(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return true;
  }
  return false;
}

// RFC 3463: class "." subject "." detail; subject 1-3 digits, detail 1-3.
bool is_enhanced(std::string_view s) {
  if (s.size() < 5 || !is_digit(s[0]) || s[1] != '.') return false;
  std::size_t i = 2, digits = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++digits;
  if (digits < 1 || digits > 3 || i >= s.size() || s[i] != '.') return false;
  ++i;
  digits = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++digits;
  return digits >= 1 && digits <= 3 && i == s.size();
}

// Splits "5.7.1 text" into the enhanced code and the text, if present.
std::pair<std::string_view, std::string_view> split_enhanced(std::string_view text) {
  const std::size_t sp = text.find(' ');
  const std::string_view first = text.substr(0, sp);
  if (!is_enhanced(first)) return {{}, text};
  return {first, sp == std::string_view::npos ? std::string_view{} : text.substr(sp + 1)};
}

}  // namespace

ParsedReply parse_reply(std::string_view text) {
  if (text.empty()) return {std::nullopt, ReplyError::Empty};
  // Split on CRLF only; a lone CR or LF stays inside a line and fails.
  std::vector<std::string_view> raw;
  while (!text.empty()) {
    const std::size_t end = text.find("\r\n");
    if (end == std::string_view::npos) {
      raw.push_back(text);
      break;
    }
    raw.push_back(text.substr(0, end));
    text.remove_prefix(end + 2);
  }
  if (raw.size() > kMaxReplyLines) return {std::nullopt, ReplyError::TooManyLines};
  Reply reply;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const std::string_view line = raw[i];
    if (line.size() + 2 > kMaxReplyLine) return {std::nullopt, ReplyError::LineTooLong};
    if (has_control(line)) return {std::nullopt, ReplyError::ControlChar};
    if (line.size() < 3 || !valid_code_text(line.substr(0, 3))) return {std::nullopt, ReplyError::BadCode};
    const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (i == 0) reply.code = code;
    if (code != reply.code) return {std::nullopt, ReplyError::CodeMismatch};
    const bool last = i + 1 == raw.size();
    std::string_view rest;
    if (line.size() > 3) {
      const char sep = line[3];
      if (sep != ' ' && sep != '-') return {std::nullopt, ReplyError::BadSeparator};
      if ((sep == '-') == last) return {std::nullopt, ReplyError::BadContinuation};
      rest = line.substr(4);
    } else if (!last) {
      return {std::nullopt, ReplyError::BadContinuation};
    }
    auto [enhanced, body] = split_enhanced(rest);
    if (i == 0) {
      reply.enhanced = std::string(enhanced);
    } else if (!enhanced.empty() && enhanced != reply.enhanced) {
      body = rest;  // a differing code on a later line is just text
    }
    reply.lines.emplace_back(body);
  }
  const ReplyError e = validate(reply);
  if (e != ReplyError::None) return {std::nullopt, e};
  return {std::move(reply), ReplyError::None};
}

ReplyError validate(const Reply& reply) {
  if (reply.code < 200 || reply.code > 599) return ReplyError::BadCode;
  if (!reply.enhanced.empty()) {
    const char cls = reply.enhanced[0];
    // RFC 3463 2: classes 2, 4, 5 only, matching the reply's class.
    if (!is_enhanced(reply.enhanced) || (cls != '2' && cls != '4' && cls != '5') ||
        cls - '0' != reply.code / 100) {
      return ReplyError::BadEnhancedCode;
    }
  }
  if (reply.lines.size() > kMaxReplyLines) return ReplyError::TooManyLines;
  const std::size_t prefix = 4 + (reply.enhanced.empty() ? 0 : reply.enhanced.size() + 1);
  for (const auto& line : reply.lines) {
    if (has_control(line)) return ReplyError::ControlChar;
    if (prefix + line.size() + 2 > kMaxReplyLine) return ReplyError::LineTooLong;
  }
  return ReplyError::None;
}

std::string_view reply_error_text(ReplyError e) {
  switch (e) {
    case ReplyError::None: return "ok";
    case ReplyError::Empty: return "empty reply";
    case ReplyError::BadCode: return "reply code is not 2xx-5xx";
    case ReplyError::CodeMismatch: return "lines of a multi-line reply differ in code";
    case ReplyError::BadSeparator: return "code not followed by space or hyphen";
    case ReplyError::BadContinuation: return "multi-line reply continuation is wrong";
    case ReplyError::BadEnhancedCode: return "enhanced status code does not match the reply class";
    case ReplyError::ControlChar: return "CR, LF or NUL inside a reply line";
    case ReplyError::LineTooLong: return "reply line over 512 octets";
    case ReplyError::TooManyLines: return "too many reply lines";
  }
  return "invalid reply";
}

}  // namespace mailhook::smtp
