// Process-wide settings both daemons make once, at start.
#pragma once

namespace mailhook::daemon {

// gRPC's mutexes are absl::Mutex; Debian's abseil is built with its
// debugging deadlock detector on, which records every lock order in a
// global graph: about 3% of the front's CPU under load (perf, bench
// compare's load). A production build of abseil has it off; so do we.
void disable_lock_order_checks();

}  // namespace mailhook::daemon
