// DKIM canonicalization and the message split (canon.h).
#include "policyd/dkim/canon.h"

namespace mailhook::policyd::dkim {
namespace {

constexpr bool wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_wsp(std::string_view s) {
  while (!s.empty() && wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && wsp(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string field_key(const HeaderField& f) { return lower(trim_wsp(f.name)); }

std::string with_crlf(std::string_view message) {
  std::string out;
  out.reserve(message.size() + message.size() / 32);
  for (std::size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '\n' && (i == 0 || message[i - 1] != '\r')) out += '\r';
    out += message[i];
  }
  return out;
}

SplitMessage split_message(std::string_view message) {
  SplitMessage out;
  std::size_t pos = 0;
  while (pos < message.size()) {
    std::size_t eol = message.find("\r\n", pos);
    const std::size_t end = eol == std::string_view::npos ? message.size() : eol;
    const std::size_t next = eol == std::string_view::npos ? message.size() : eol + 2;
    if (end == pos) {  // the empty line: the body follows
      out.body = message.substr(next);
      return out;
    }
    const std::string_view line = message.substr(pos, end - pos);
    if (wsp(line.front()) && !out.fields.empty()) {
      HeaderField& f = out.fields.back();
      f.raw = std::string_view(f.raw.data(), static_cast<std::size_t>(message.data() + end - f.raw.data()));
    } else {
      const std::size_t colon = line.find(':');
      HeaderField f;
      f.name = colon == std::string_view::npos ? std::string_view() : line.substr(0, colon);
      f.raw = line;
      out.fields.push_back(f);
    }
    pos = next;
  }
  return out;  // no empty line: header only, no body
}

std::string canonical_header(const HeaderField& field, Canon c) {
  if (c == Canon::Simple) return std::string(field.raw) + "\r\n";
  // RFC 6376 3.4.2: lower-case name, unfold, WSP runs -> SP, no WSP at the
  // value's ends or around the colon.
  const std::size_t colon = field.raw.find(':');
  const std::string_view name = colon == std::string_view::npos ? field.raw : field.raw.substr(0, colon);
  const std::string_view value = colon == std::string_view::npos ? std::string_view() : field.raw.substr(colon + 1);
  std::string out = lower(trim_wsp(name));
  out += ':';
  bool space = false;
  bool any = false;
  for (const char ch : value) {
    if (ch == '\r' || ch == '\n') continue;  // unfolding
    if (wsp(ch)) {
      space = true;
      continue;
    }
    if (space && any) out += ' ';
    space = false;
    any = true;
    out += ch;
  }
  out += "\r\n";
  return out;
}

std::string canonical_body(std::string_view body, Canon c) {
  std::string out;
  out.reserve(body.size() + 2);
  std::size_t pos = 0;
  while (pos < body.size()) {
    const std::size_t eol = body.find("\r\n", pos);
    const std::size_t end = eol == std::string_view::npos ? body.size() : eol;
    std::string_view line = body.substr(pos, end - pos);
    pos = eol == std::string_view::npos ? body.size() : eol + 2;
    if (c == Canon::Simple) {
      out.append(line);
    } else {
      // RFC 6376 3.4.4: WSP at the line end goes, a WSP run inside becomes SP.
      while (!line.empty() && wsp(line.back())) line.remove_suffix(1);
      bool space = false;
      for (const char ch : line) {
        if (wsp(ch)) {
          space = true;
          continue;
        }
        if (space) out += ' ';
        space = false;
        out += ch;
      }
    }
    out += "\r\n";
  }
  // Trailing empty lines are ignored by both (RFC 6376 3.4.3, 3.4.4).
  while (out.size() >= 4 && out.compare(out.size() - 4, 4, "\r\n\r\n") == 0) out.resize(out.size() - 2);
  if (out == "\r\n") out.clear();
  if (out.empty() && c == Canon::Simple) out = "\r\n";  // 3.4.3: an empty body is one CRLF
  return out;
}

}  // namespace mailhook::policyd::dkim
