#include "daemon/memory_trim.h"

#include <malloc.h>

#include <fstream>

#include "mailcore/telemetry/log.h"

namespace mailhook::daemon {
namespace {

// VmRSS in MiB from /proc/self/status, for the log; -1 if unreadable.
double rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      double kib = 0;
      in >> kib;
      return kib / 1024.0;
    }
    in.ignore(1 << 20, '\n');
  }
  return -1;
}

constexpr double kMiB = 1024.0 * 1024.0;

}  // namespace

MemoryTrimmer::MemoryTrimmer(std::string who, std::chrono::milliseconds period)
    : who_(std::move(who)), period_(period) {
  thread_ = std::thread([this] { run(); });
}

MemoryTrimmer::~MemoryTrimmer() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void MemoryTrimmer::run() {
  std::size_t free_after_last_trim = 0;
  std::unique_lock l(mu_);
  while (!wake_.wait_for(l, period_, [this] { return stopping_; })) {
    const struct mallinfo2 before = mallinfo2();
    if (!due(before.fordblks, before.uordblks, free_after_last_trim)) {
      // Freed memory taken again lowers the bar for the next trim.
      if (before.fordblks < free_after_last_trim) free_after_last_trim = before.fordblks;
      continue;
    }
    const double rss_before = rss_mib();
    malloc_trim(0);
    const struct mallinfo2 after = mallinfo2();
    free_after_last_trim = after.fordblks;
    log::info("{}: malloc held {:.1f} MiB freed against {:.1f} MiB in use; returned free pages to the system "
              "(RSS {:.1f} -> {:.1f} MiB)",
              who_, before.fordblks / kMiB, before.uordblks / kMiB, rss_before, rss_mib());
  }
}

}  // namespace mailhook::daemon
