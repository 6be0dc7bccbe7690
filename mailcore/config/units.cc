// Parsing of durations and sizes with units (units.h). Overflow is an
// error, never a wrap: "99999999999999999999h" must not become 0.
#include "mailcore/config/units.h"

#include <cctype>
#include <limits>

namespace mailhook::config {
namespace {

// Leading digits as a number; the rest in `suffix`. False without digits
// or on overflow.
bool split_number(std::string_view text, std::uint64_t& n, std::string_view& suffix) {
  std::size_t i = 0;
  n = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const std::uint64_t d = static_cast<std::uint64_t>(text[i] - '0');
    if (n > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    n = n * 10 + d;
    ++i;
  }
  suffix = text.substr(i);
  return i > 0;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool multiply(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  if (b != 0 && a > std::numeric_limits<std::uint64_t>::max() / b) return false;
  out = a * b;
  return true;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::chrono::milliseconds bare_unit,
                                                        std::string& error) {
  const std::string_view t = trim(text);
  std::uint64_t n = 0;
  std::string_view suffix;
  if (!split_number(t, n, suffix)) {
    error = "not a duration: '" + std::string(text) + "' (a number with ms, s, m, h or d: 500ms, 30s, 5m)";
    return std::nullopt;
  }
  std::uint64_t unit_ms = 0;
  if (suffix.empty()) {
    unit_ms = static_cast<std::uint64_t>(bare_unit.count());
  } else if (suffix == "ms") {
    unit_ms = 1;
  } else if (suffix == "s") {
    unit_ms = 1000;
  } else if (suffix == "m") {
    unit_ms = 60'000;
  } else if (suffix == "h") {
    unit_ms = 3'600'000;
  } else if (suffix == "d") {
    unit_ms = 86'400'000;
  } else {
    error = "unknown duration unit '" + std::string(suffix) + "' in '" + std::string(text) + "' (ms, s, m, h or d)";
    return std::nullopt;
  }
  std::uint64_t ms = 0;
  if (!multiply(n, unit_ms, ms) || ms > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    error = "duration too large: '" + std::string(text) + "'";
    return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

std::optional<std::uint64_t> parse_size(std::string_view text, std::uint64_t bare_unit, std::string& error) {
  const std::string_view t = trim(text);
  std::uint64_t n = 0;
  std::string_view suffix;
  if (!split_number(t, n, suffix)) {
    error = "not a size: '" + std::string(text) + "' (a number with K, M, G or T: 64K, 25M)";
    return std::nullopt;
  }
  std::uint64_t unit = bare_unit;
  if (!suffix.empty()) {
    const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(suffix.front())));
    std::string_view rest = suffix.substr(1);
    if (c == 'B' && rest.empty()) {
      unit = 1;
    } else {
      switch (c) {
        case 'K': unit = std::uint64_t{1} << 10; break;
        case 'M': unit = std::uint64_t{1} << 20; break;
        case 'G': unit = std::uint64_t{1} << 30; break;
        case 'T': unit = std::uint64_t{1} << 40; break;
        default: unit = 0;
      }
      if (!(rest.empty() || rest == "B" || rest == "iB") || unit == 0) {
        error = "unknown size unit '" + std::string(suffix) + "' in '" + std::string(text) + "' (K, M, G or T)";
        return std::nullopt;
      }
    }
  }
  std::uint64_t bytes = 0;
  if (!multiply(n, unit, bytes)) {
    error = "size too large: '" + std::string(text) + "'";
    return std::nullopt;
  }
  return bytes;
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = static_cast<std::uint64_t>(d.count());
  if (ms == 0) return "0s";
  for (const auto& [unit, name] : {std::pair<std::uint64_t, const char*>{86'400'000, "d"}, {3'600'000, "h"},
                                   {60'000, "m"}, {1000, "s"}}) {
    if (ms % unit == 0) return std::to_string(ms / unit) + name;
  }
  return std::to_string(ms) + "ms";
}

std::string format_size(std::uint64_t bytes) {
  if (bytes == 0) return "0";
  for (const auto& [shift, name] : {std::pair<int, const char*>{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}}) {
    if (bytes % (std::uint64_t{1} << shift) == 0) return std::to_string(bytes >> shift) + name;
  }
  return std::to_string(bytes);
}

}  // namespace mailhook::config
