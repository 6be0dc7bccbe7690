// Gives the heap freed after a burst of sessions back to the system.
// glibc keeps what a process frees in its arenas: after 10,000 idle
// sessions close, the front would stay at its peak RSS (240 MiB against
// 16 at start, bench/scale.py idle). A thread of its own looks every few
// seconds at how much freed memory malloc holds (mallinfo2) and, when that
// is past kMinFree and more than what is in use, calls malloc_trim, which
// returns the whole free pages of every arena. A trim that could not give
// much back is not repeated until that much more was freed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>

namespace mailhook::daemon {

class MemoryTrimmer {
 public:
  static constexpr std::size_t kMinFree = 16u << 20;

  // `who` names the daemon in the log line.
  explicit MemoryTrimmer(std::string who, std::chrono::milliseconds period = std::chrono::seconds(5));
  ~MemoryTrimmer();  // stops and joins

  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

  // The rule: bytes free in malloc's arenas now, bytes in use, and what
  // was still free after the last trim.
  static bool due(std::size_t free_bytes, std::size_t used_bytes, std::size_t free_after_last_trim) {
    return free_bytes >= free_after_last_trim + kMinFree && free_bytes > used_bytes;
  }

 private:
  void run();

  std::string who_;
  std::chrono::milliseconds period_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace mailhook::daemon
