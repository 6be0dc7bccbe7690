#include "daemon/process_setup.h"

#include <absl/synchronization/mutex.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "mailcore/telemetry/log.h"

namespace mailhook::daemon {

void disable_lock_order_checks() { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); }

std::uint64_t raise_open_files_limit(std::uint64_t needed) {
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    log::warning("cannot read RLIMIT_NOFILE: {}", std::strerror(errno));
    return 0;
  }
  if (rl.rlim_cur < rl.rlim_max) {
    const rlim_t before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      log::warning("cannot raise RLIMIT_NOFILE from {} to {}: {}", before, rl.rlim_max, std::strerror(errno));
      rl.rlim_cur = before;
    }
  }
  const std::uint64_t limit = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
  if (needed > limit) {
    log::warning("open files limit {} (RLIMIT_NOFILE, hard limit {}) is below the {} descriptors this "
                 "configuration may need: connections beyond it wait in the backlog; raise the hard limit "
                 "(ulimit -Hn, systemd LimitNOFILE=) or lower --max-connections",
                 limit, rl.rlim_max == RLIM_INFINITY ? UINT64_MAX : rl.rlim_max, needed);
  }
  return limit;
}

}  // namespace mailhook::daemon
