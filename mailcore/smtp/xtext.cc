// xtext checks and decoding (RFC 3461 4), shared by the DSN parameters of
// MAIL/RCPT and XCLIENT's attribute values.
#include "mailcore/smtp/xtext.h"

namespace mailhook::smtp {
namespace {

constexpr int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

constexpr bool is_upper_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

// RFC 5322 3.2.3 atext: the characters of an atom (addr-type of ORCPT).
constexpr bool is_atext(char c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  for (const char a : std::string_view("!#$%&'*+-/=?^_`{|}~")) {
    if (c == a) return true;
  }
  return false;
}

}  // namespace

bool is_xtext(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '+') {
      if (i + 2 >= s.size() || !is_upper_hex(s[i + 1]) || !is_upper_hex(s[i + 2])) return false;
      i += 2;
      continue;
    }
    if (c < '!' || c > '~' || c == '=') return false;
  }
  return true;
}

std::optional<std::string> xtext_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '+') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex_value(s[i + 1]);
    const int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool is_valid_envid(std::string_view value) {
  return !value.empty() && value.size() <= kMaxEnvid && is_xtext(value);
}

bool is_valid_orcpt(std::string_view value) {
  if (value.size() > kMaxOrcpt) return false;
  const std::size_t semi = value.find(';');
  if (semi == std::string_view::npos || semi == 0 || semi + 1 == value.size()) return false;
  for (const char c : value.substr(0, semi)) {
    if (!is_atext(c)) return false;
  }
  return is_xtext(value.substr(semi + 1));
}

bool has_control(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

}  // namespace mailhook::smtp
