#include "daemon/process_setup.h"

#include <absl/synchronization/mutex.h>

namespace mailhook::daemon {

void disable_lock_order_checks() { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); }

}  // namespace mailhook::daemon
