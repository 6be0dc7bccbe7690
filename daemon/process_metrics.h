// The process_* families every Prometheus client library exports (CPU,
// resident memory, file descriptors and their limit, start time) read
// from /proc/self at scrape time, and mailhook_build_info{version,commit}.
// Reads only this process's own /proc files; never a value from a client.
#pragma once

#include <string>

namespace mailhook::daemon {

// `daemon`: "front" or "policyd", a label of mailhook_build_info.
std::string render_process_metrics(const std::string& daemon);

}  // namespace mailhook::daemon
