// Process-wide log sink for both daemons: one line per call, to syslog
// (facility mail) or to stderr with a timestamp. Thread-safe; never throws.
// Lines are grep-friendly: "session=... client=... event=... reply=...".
// No client byte reaches a line raw: wrap client values in escaped(), and
// write() turns any control character left into \xNN, so one call is
// always one line (THREATS.md, SMTP port).
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <string_view>

namespace mailhook::log {

// A value a client chose (HELO, MAIL/RCPT address, AUTH user, XCLIENT
// attribute, command text) on its way into a log line: format it with
// "{}" as escaped(value). Bytes outside printable ASCII, space, '"' and
// '\' become \xNN, so the value stays one token and can fake neither a
// line nor a field ("helo=a user=root" cannot be written).
struct Escaped {
  std::string_view text;
};
inline Escaped escaped(std::string_view text) { return Escaped{text}; }
// The same as a string.
std::string escape(std::string_view text);
// Free text a client's bytes may be in (a script's syslog.* message, an
// error naming what the client sent): CR, LF and TAB as \r \n \t, every
// other control byte and DEL as \xhh, a backslash as \\ (so an escape in
// the log always means one); spaces and UTF-8 are kept, so the text reads
// as written but can never start a line of its own.
std::string escape_text(std::string_view text);

enum class Level : int { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

// --log-level: "error", "warning", "notice", "info" or "debug" (syslog's
// names); nullopt for anything else. Lines below the level are dropped
// before they are formatted.
std::optional<Level> parse_level(std::string_view name);

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
  if (enabled(Level::Warning)) write(Level::Warning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void notice(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::Notice)) write(Level::Notice, fmt::format(f, std::forward<Args>(args)...));
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

template <>
struct fmt::formatter<mailhook::log::Escaped> : fmt::formatter<std::string_view> {
  template <typename Context>
  auto format(const mailhook::log::Escaped& e, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(mailhook::log::escape(e.text), ctx);
  }
};
