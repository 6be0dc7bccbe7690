// Process-wide log sink for both daemons: one line per call, to syslog
// (facility mail) or to stderr with a timestamp. Thread-safe; never throws.
// Lines are grep-friendly: "session=... client=... event=... reply=...".
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace mailhook::log {

enum class Level : int { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

// Called once by main(): `ident` names the program in syslog/stderr.
void init(std::string_view ident, bool to_stderr, Level threshold = Level::Info);
bool enabled(Level level);
void write(Level level, std::string_view line);

template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::Error, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warning(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::Warning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void notice(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::Notice, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::Info)) write(Level::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::Debug)) write(Level::Debug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace mailhook::log
