// What an acceptor does when accept(2) fails (EMFILE/ENFILE when the
// process is out of descriptors, ENOBUFS, ...): the pending connection
// stays in the backlog, so trying again at once is a busy loop (100% CPU,
// ~400,000 log lines/s). It waits instead, longer while failures go on,
// and logs at most one line a second, counting the failures in between
// (THREATS.md, process limits). Shared by every acceptor of both daemons;
// never sleeps itself: the caller waits on its own timer.
#pragma once

#include <chrono>
#include <string>
#include <system_error>

#include "daemon/rate_limited_log.h"

namespace mailhook::daemon {

class AcceptBackoff {
 public:
  static constexpr std::chrono::milliseconds kFirstPause{10};
  static constexpr std::chrono::milliseconds kMaxPause{500};

  // `who` names the listener in the log ("smtp 127.0.0.1:2525").
  explicit AcceptBackoff(std::string who) : who_(std::move(who)) {}

  // After a failed accept: maybe one log line, and the pause before the next.
  std::chrono::milliseconds failed(const std::error_code& ec);
  // After an accept that worked: the next failure starts short again.
  void succeeded() { pause_ = std::chrono::milliseconds(0); }

 private:
  std::string who_;
  std::chrono::milliseconds pause_{0};
  RateLimitedLog log_;
};

}  // namespace mailhook::daemon
