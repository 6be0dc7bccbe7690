// ASCII case rules of SMTP: verbs, keywords and mechanism names are
// case-insensitive (RFC 5321 2.4), and only in ASCII; locale never enters.
#pragma once

#include <string>
#include <string_view>

namespace mailhook::smtp {

constexpr char ascii_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

inline std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = ascii_upper(c);
  return out;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_upper(a[i]) != ascii_upper(b[i])) return false;
  }
  return true;
}

}  // namespace mailhook::smtp
