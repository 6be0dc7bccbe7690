// A warning that may repeat fast (accept failing for want of descriptors,
// connections past a cap) logged at most once a second; the lines held
// back are counted in the next one (THREATS.md, process limits: never a
// log line per failure). Not thread-safe: one per acceptor loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "mailcore/telemetry/log.h"

namespace mailhook::daemon {

class RateLimitedLog {
 public:
  static constexpr std::chrono::seconds kEvery{1};

  template <typename... Args>
  void warning(fmt::format_string<Args...> f, Args&&... args) {
    const auto now = std::chrono::steady_clock::now();
    if (last_ != std::chrono::steady_clock::time_point{} && now - last_ < kEvery) {
      ++held_;
      return;
    }
    last_ = now;
    std::string line = fmt::format(f, std::forward<Args>(args)...);
    if (held_ > 0) line += fmt::format(" ({} more like it since the last line)", held_);
    held_ = 0;
    log::warning("{}", line);
  }

 private:
  std::chrono::steady_clock::time_point last_{};
  std::uint64_t held_ = 0;
};

}  // namespace mailhook::daemon
