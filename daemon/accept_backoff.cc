// AcceptBackoff: the pause after a failed accept and its rate-limited log.
#include "daemon/accept_backoff.h"

#include <algorithm>

#include "mailcore/telemetry/log.h"

namespace mailhook::daemon {

std::chrono::milliseconds AcceptBackoff::failed(const std::error_code& ec) {
  pause_ = pause_.count() == 0 ? kFirstPause : std::min(kMaxPause, pause_ * 2);
  const auto now = std::chrono::steady_clock::now();
  if (last_log_ == std::chrono::steady_clock::time_point{} || now - last_log_ >= kLogEvery) {
    log::warning("{}: accept failed: {} ({} more failure(s) since the last line); retrying in {} ms", who_,
                 ec.message(), unlogged_, pause_.count());
    last_log_ = now;
    unlogged_ = 0;
  } else {
    ++unlogged_;
  }
  return pause_;
}

}  // namespace mailhook::daemon
