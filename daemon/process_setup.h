// Process-wide settings both daemons make once, at start.
#pragma once

#include <cstdint>

namespace mailhook::daemon {

// gRPC's mutexes are absl::Mutex; Debian's abseil is built with its
// debugging deadlock detector on, which records every lock order in a
// global graph: about 3% of the front's CPU under load (perf, bench
// compare's load). A production build of abseil has it off; so do we.
void disable_lock_order_checks();

// RLIMIT_NOFILE: raises the soft limit to the hard one (a shell's 1024 is
// too few for a daemon holding thousands of sockets) and returns the limit
// now in force. `needed`: the descriptors the configuration may use
// (--max-connections and the like); when they do not fit, one warning
// says so and what to change. Call after log::init.
std::uint64_t raise_open_files_limit(std::uint64_t needed = 0);

}  // namespace mailhook::daemon
