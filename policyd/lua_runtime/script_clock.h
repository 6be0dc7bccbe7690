// The wall clock scripts see: os.time(), os.date() without a time, and
// the "now" of spf.check (%{t}) and dkim.verify/dkim.sign (t=, x=). It is
// the system clock, unless --test case files set it (`clock:`, `advance:`
// in docs/policy-tests.md) so time-dependent policies are testable. It
// must never drive policyd's own timers (hook and DNS deadlines, logs):
// those keep the real clocks.
#pragma once

#include <lua.hpp>

#include <atomic>
#include <cstdint>
#include <ctime>

namespace mailhook::policyd {

// Set from the case runner's thread between the steps of a case, read on
// the worker's thread: atomics.
class ScriptClock {
 public:
  std::int64_t now() const {
    return fixed_.load() ? seconds_.load() : static_cast<std::int64_t>(std::time(nullptr));
  }
  void set(std::int64_t seconds) {
    seconds_.store(seconds);
    fixed_.store(true);
  }
  void advance(std::int64_t seconds) { seconds_.fetch_add(seconds); }
  bool fixed() const { return fixed_.load(); }

 private:
  std::atomic<bool> fixed_{false};
  std::atomic<std::int64_t> seconds_{0};
};

// Seconds since the epoch as the scripts of L's generation see them.
std::int64_t script_now(lua_State* L);

}  // namespace mailhook::policyd
