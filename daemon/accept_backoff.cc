// AcceptBackoff: the pause after a failed accept and its rate-limited log.
#include "daemon/accept_backoff.h"

#include <algorithm>

namespace mailhook::daemon {

std::chrono::milliseconds AcceptBackoff::failed(const std::error_code& ec) {
  pause_ = pause_.count() == 0 ? kFirstPause : std::min(kMaxPause, pause_ * 2);
  log_.warning("{}: accept failed: {}; retrying in {} ms", who_, ec.message(), pause_.count());
  return pause_;
}

}  // namespace mailhook::daemon
