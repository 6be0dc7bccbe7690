// RecordingObserver: a SessionObserver that keeps what the runtime
// decides, for callers that drive a session from another thread and wait
// for each answer (mailhook-policyd --test, the runtime's unit tests).
// Waiting is a condition variable with a deadline, never a sleep.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd::testing {

class RecordingObserver : public SessionObserver {
 public:
  void opened(Capabilities c, Decision d) override {
    std::lock_guard l(mu_);
    capabilities_ = c;
    decisions_.push_back(std::move(d));
    cv_.notify_all();
  }
  void decided(Decision d) override {
    std::lock_guard l(mu_);
    decisions_.push_back(std::move(d));
    cv_.notify_all();
  }
  // The next decision, or nullopt when none came within `limit`.
  std::optional<Decision> next(std::chrono::milliseconds limit) {
    std::unique_lock l(mu_);
    if (!cv_.wait_for(l, limit, [&] { return !decisions_.empty(); })) return std::nullopt;
    Decision d = std::move(decisions_.front());
    decisions_.pop_front();
    return d;
  }
  // What the scripts listen to (set with the first decision).
  Capabilities capabilities() {
    std::lock_guard l(mu_);
    return capabilities_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Decision> decisions_;
  Capabilities capabilities_;
};

}  // namespace mailhook::policyd::testing
