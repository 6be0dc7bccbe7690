// Calls one hook of every script in --script order on the session's Lua
// thread, under the hook deadline, and turns what comes back into an
// outcome. The one place with a switch on lua_resume's status. A hook
// that yields for I/O (dns.wait) suspends this coroutine only; the worker
// serves other sessions until the session's Waker is woken.
#pragma once

#include <asio.hpp>

#include <functional>
#include <optional>

#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {

struct RuntimeMetrics;

struct HookOutcome {
  enum class Kind : std::uint8_t {
    Default,      // no hook, no reply, an error or a malformed reply
    Replied,      // a well-formed reply
    Overrun,      // past --hook-timeout or --lua-memory: 451 4.3.0
  };
  Kind kind = Kind::Default;
  Reply reply;
  // Who decided (Replied, Overrun): the hook, the script's index in the
  // generation (for the per-rule metrics) and its name as --script gave it
  // (for the refusal's log line and the front's).
  HookPhase phase = HookPhase::Load;
  std::size_t script = 0;
  std::string script_name;
};


// Wakes a suspended hook: a timer that never fires by itself, cancelled
// by wake(). A wake before the wait is kept, so none is lost.
class Waker {
 public:
  explicit Waker(const asio::any_io_executor& ex) : timer_(ex) {}
  void wake() {
    woken_ = true;
    timer_.cancel();
  }
  asio::awaitable<void> wait();

 private:
  asio::steady_timer timer_;
  bool woken_ = false;
};

// True when any script defines hook.<phase>.
bool has_hook(Generation& g, HookPhase phase);
// True when script `i` of the generation defines hook.<phase>.
bool script_has_hook(Generation& g, std::size_t i, HookPhase phase);

// Runs hook.<phase> of each script until one replies.
asio::awaitable<HookOutcome> run_hook(SessionContext& s, HookPhase phase, PushArgs args = {});

// Registers mailhook_policyd_hook_errors_total{script,hook} at 0 for every
// hook each script defines, so the series exist before the first error.
// On a generation no worker runs yet (after loading).
void register_hook_error_series(Generation& g, RuntimeMetrics& metrics);

// Releases the session's Lua thread (end of session, or a failed thread).
void release_thread(SessionContext& s);

// Loading the scripts (load_generation): g.L's code and every thread it
// creates run under --load-timeout until disarmed.
void arm_load_deadline(Generation& g);
void disarm_load_deadline(Generation& g);

// The reply for a hook stopped by the timeout or the memory cap.
Reply overrun_reply();

}  // namespace mailhook::policyd
