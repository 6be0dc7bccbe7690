// The log sink behind log.h. The only mutable global of mailcore: set once
// by main() before threads start, read-only afterwards.
#include "mailcore/telemetry/log.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>

namespace mailhook::log {
namespace {

struct Sink {
  std::string ident = "mailhook";
  bool to_stderr = true;
  std::atomic<int> threshold{static_cast<int>(Level::Info)};
};

Sink& sink() {
  static Sink s;
  return s;
}

std::string_view level_name(Level l) {
  switch (l) {
    case Level::Error: return "error";
    case Level::Warning: return "warning";
    case Level::Notice: return "notice";
    case Level::Info: return "info";
    case Level::Debug: return "debug";
  }
  return "info";
}

constexpr char kHex[] = "0123456789ABCDEF";

void append_hex(std::string& out, unsigned char c) {
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

// Defence in depth for values a caller forgot to wrap: a log call is one
// line whatever it holds.
std::string one_line(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  for (const char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      append_hex(out, u);
    } else {
      out += c;
    }
  }
  return out;
}

bool has_control(std::string_view line) {
  for (const char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

}  // namespace

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      append_hex(out, u);
    } else {
      out += c;
    }
  }
  return out;
}

std::string escape_text(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  return out;
}

std::optional<Level> parse_level(std::string_view name) {
  for (const Level l : {Level::Error, Level::Warning, Level::Notice, Level::Info, Level::Debug}) {
    if (level_name(l) == name) return l;
  }
  return std::nullopt;
}

void init(std::string_view ident, bool to_stderr, Level threshold) {
  Sink& s = sink();
  s.ident = std::string(ident);
  s.to_stderr = to_stderr;
  s.threshold = static_cast<int>(threshold);
  if (!to_stderr) openlog(s.ident.c_str(), LOG_PID | LOG_NDELAY, LOG_MAIL);
}

bool enabled(Level level) { return static_cast<int>(level) <= sink().threshold.load(std::memory_order_relaxed); }

void write(Level level, std::string_view raw) {
  if (!enabled(level)) return;
  std::string cleaned;
  std::string_view line = raw;
  if (has_control(raw)) {
    cleaned = one_line(raw);
    line = cleaned;
  }
  Sink& s = sink();
  if (!s.to_stderr) {
    syslog(static_cast<int>(level), "%.*s", static_cast<int>(line.size()), line.data());
    return;
  }
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  // One write(2) per line, so lines of concurrent threads never interleave.
  std::string out = fmt::format("{}.{:03d}Z {}[{}]: {}: {}\n", stamp, ms, s.ident, getpid(),
                                level_name(level), line);
  ssize_t ignored = ::write(STDERR_FILENO, out.data(), out.size());
  (void)ignored;
}

}  // namespace mailhook::log
