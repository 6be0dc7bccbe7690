// Hook calls: deadline by count hook, thread recycling, and run_hook in
// its three parts: the resume (suspensions for I/O waited out), the
// outcome (the one switch on lua_resume's status, reply validation) and
// the shadow guard (a shadow script's effects logged, then undone).
#include "policyd/lua_runtime/hook_runner.h"

#include <asio/experimental/as_tuple.hpp>

#include "mailcore/smtp/reply_text.h"
#include "mailcore/telemetry/log.h"
#include "mailcore/telemetry/decision_log.h"
#include "policyd/lua_runtime/refusal_log.h"
#include "policyd/lua_runtime/runtime_metrics.h"

namespace mailhook::policyd {
namespace {

constexpr int kCheckEvery = 1000;  // instructions between deadline checks

// Past the deadline the hook raises on every count, so a pcall inside the
// script that catches the error is interrupted again at once.
void deadline_hook(lua_State* L, lua_Debug*) {
  Generation& g = generation_of(L);
  if (!g.timed_out && std::chrono::steady_clock::now() < g.deadline) return;
  if (!g.timed_out) {
    g.timed_out = true;
    lua_sethook(L, deadline_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
  }
  // Level 0: in a hook, the Lua function that was interrupted.
  luaL_where(L, 0);
  if (g.loading) {
    lua_pushfstring(L, "loading ran past --load-timeout (%d ms)", static_cast<int>(g.load_timeout.count()));
  } else {
    lua_pushfstring(L, "hook ran past --hook-timeout (%d ms)", static_cast<int>(g.hook_timeout.count()));
  }
  lua_concat(L, 2);
  lua_error(L);
}

lua_State* session_thread(SessionContext& s) {
  if (s.thread == nullptr) {
    lua_State* L = s.generation->L;
    s.thread = lua_newthread(L);
    s.thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return s.thread;
}

// Pushes env.hook[name] of script `i` on the main state; true if a function.
bool push_hook(Generation& g, std::size_t i, std::string_view name) {
  lua_State* L = g.L;
  // Raw reads: outside a hook no metamethod of a script may run (it
  // would run without the deadline, and an error there has no handler).
  lua_rawgeti(L, LUA_REGISTRYINDEX, g.env_refs[i]);
  lua_pushliteral(L, "hook");
  if (lua_rawget(L, -2) != LUA_TTABLE) {
    lua_pop(L, 2);
    return false;
  }
  lua_pushlstring(L, name.data(), name.size());
  const bool fn = lua_rawget(L, -2) == LUA_TFUNCTION;
  lua_remove(L, -2);
  lua_remove(L, -2);
  if (!fn) lua_pop(L, 1);
  return fn;
}

using Clock = std::chrono::steady_clock;

// Starts (or continues) the hook's run under the deadline.
void arm_deadline(Generation& g, SessionContext& s, lua_State* T, Clock::duration budget) {
  g.current = &s;
  g.timed_out = false;
  g.deadline = Clock::now() + budget;
  lua_sethook(T, deadline_hook, LUA_MASKCOUNT, kCheckEvery);
}

}  // namespace

void arm_load_deadline(Generation& g) {
  g.loading = true;
  g.timed_out = false;
  g.deadline = Clock::now() + g.load_timeout;
  lua_sethook(g.L, deadline_hook, LUA_MASKCOUNT, kCheckEvery);
}

void disarm_load_deadline(Generation& g) {
  g.loading = false;
  g.timed_out = false;
  lua_sethook(g.L, nullptr, 0, 0);
}

void SessionContext::wake() {
  if (waker) waker->wake();
}

asio::awaitable<void> Waker::wait() {
  while (!woken_) {
    timer_.expires_at(Clock::time_point::max());
    co_await timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  woken_ = false;
}

Reply overrun_reply() { return Reply{451, "4.3.0", {"Policy temporarily unavailable, try again later"}}; }

bool has_hook(Generation& g, HookPhase phase) {
  for (std::size_t i = 0; i < g.env_refs.size(); ++i) {
    if (push_hook(g, i, hook_name(phase))) {
      lua_pop(g.L, 1);
      return true;
    }
  }
  return false;
}

bool script_has_hook(Generation& g, std::size_t i, HookPhase phase) {
  if (!push_hook(g, i, hook_name(phase))) return false;
  lua_pop(g.L, 1);
  return true;
}

void register_hook_error_series(Generation& g, RuntimeMetrics& metrics) {
  for (std::size_t i = 0; i < g.env_refs.size(); ++i) {
    for (std::size_t p = 1; p <= static_cast<std::size_t>(kLastHookPhase); ++p) {  // 0 is Load
      const auto phase = static_cast<HookPhase>(p);
      if (!push_hook(g, i, hook_name(phase))) continue;
      lua_pop(g.L, 1);
      metrics.hook_errors(g.script_names[i], phase);
    }
  }
}

void release_thread(SessionContext& s) {
  if (s.thread_ref != LUA_NOREF && s.generation) luaL_unref(s.generation->L, LUA_REGISTRYINDEX, s.thread_ref);
  s.thread_ref = LUA_NOREF;
  s.thread = nullptr;
}

namespace {

// --trace: the arguments of a hook call as one log token.
std::string render_args(lua_State* T, int nargs) {
  std::string out;
  for (int i = lua_gettop(T) - nargs + 1; i <= lua_gettop(T); ++i) {
    if (!out.empty()) out += ", ";
    std::size_t n = 0;
    switch (lua_type(T, i)) {
      case LUA_TSTRING: {
        const char* v = lua_tolstring(T, i, &n);
        out += "\"" + log::escape_text({v, std::min<std::size_t>(n, 200)}) + (n > 200 ? "…" : "") + "\"";
        break;
      }
      case LUA_TNUMBER:
      case LUA_TBOOLEAN: out += luaL_tolstring(T, i, &n); lua_pop(T, 1); break;
      default: out += luaL_typename(T, i); break;
    }
  }
  return out;
}

// The resume: how one script's hook ended after lua_resume, with every
// suspension for I/O waited out.
struct Resumed {
  int status = LUA_OK;  // lua_resume's last status
  int nres = 0;         // values the hook returned (LUA_OK)
  bool dropped = false; // the session ended while the hook waited: no outcome
};

// Runs the hook whose function and `nargs` arguments are on T until it
// returns, fails or the session ends. Suspended on I/O, it waits without
// holding the worker, then goes on with what was left of the hook's time
// (the wait is bounded on its own, by --dns-timeout), the same client and
// the same memory cap.
asio::awaitable<Resumed> resume_hook(SessionContext& s, Generation& g, lua_State* T, std::size_t i, HookPhase phase,
                                     int nargs) {
  Resumed r;
  s.phase = phase;
  arm_deadline(g, s, T, g.hook_timeout);
  r.status = lua_resume(T, g.L, nargs, &r.nres);
  while (r.status == LUA_YIELD && s.resume_when) {
    const Clock::duration left = g.deadline - Clock::now();
    g.current = nullptr;
    while (!s.aborted && !s.resume_when()) {
      co_await s.waker->wait();
    }
    s.resume_when = nullptr;
    if (s.aborted) {  // the session ended meanwhile: drop the hook
      log::info("session={} script={} hook={}: session ended while waiting", log::escape_text(s.start.session_id),
                g.script_names[i], hook_name(phase));
      release_thread(s);
      r.dropped = true;
      co_return r;
    }
    s.phase = phase;
    arm_deadline(g, s, T, std::max(left, Clock::duration::zero()));
    r.status = lua_resume(T, g.L, 0, &r.nres);
  }
  g.current = nullptr;
  s.resume_when = nullptr;
  co_return r;
}

// The outcome of one script's hook, and whether it ends the chain.
struct ScriptOutcome {
  HookOutcome result;
  bool replied = false;  // a reply (or an overrun), as opposed to nothing
  bool stop = true;      // an enforcing script's outcome ends the chain
};

// A hook stopped by --hook-timeout or --lua-memory: 451 4.3.0.
ScriptOutcome overrun() { return ScriptOutcome{HookOutcome{HookOutcome::Kind::Overrun, overrun_reply()}, true, true}; }

// What a hook that returned (LUA_OK) answers: its reply, nothing (the
// next script may decide), or a malformed reply (a script error).
ScriptOutcome returned_outcome(SessionContext& s, Generation& g, lua_State* T, const std::string& script,
                               HookPhase phase, int nres, bool& script_error, const char* after_error) {
  const std::string_view name = hook_name(phase);
  if (g.timed_out) {
    // The deadline passed in a coroutine the hook resumed (which
    // returned the error to it): the hook's answer cannot stand.
    lua_settop(T, 0);
    log::error("session={} script={} hook={}: stopped after --hook-timeout (in a coroutine); 451 sent",
               log::escape_text(s.start.session_id), script, name);
    s.metrics->hook_overruns(phase).add();
    return overrun();
  }
  if (nres == 0 || lua_isnil(T, -nres)) {
    lua_settop(T, 0);
    return ScriptOutcome{.stop = false};
  }
  std::size_t len = 0;
  const char* text = lua_type(T, -nres) == LUA_TSTRING ? lua_tolstring(T, -nres, &len) : nullptr;
  smtp::ParsedReply parsed = text ? smtp::parse_reply({text, len}) : smtp::ParsedReply{};
  lua_settop(T, 0);
  if (parsed.reply) return ScriptOutcome{HookOutcome{HookOutcome::Kind::Replied, std::move(*parsed.reply)}, true, true};
  log::warning("session={} script={} hook={}: malformed reply ({}); {}", log::escape_text(s.start.session_id), script,
               name, text ? smtp::reply_error_text(parsed.error) : "not a string", after_error);
  script_error = true;
  return ScriptOutcome{};
}

// The outcome: lua_resume's status (the one switch on it) turned into
// what the event gets. A script error or a malformed reply is counted per
// script, and --hook-error says what the event gets (the default, or 451
// 4.3.0).
ScriptOutcome hook_outcome(SessionContext& s, Generation& g, lua_State* T, std::size_t i, HookPhase phase,
                           const Resumed& r) {
  const std::string& script = g.script_names[i];
  const std::string_view name = hook_name(phase);
  const char* after_error = g.hook_error_tempfail ? "451 sent (--hook-error tempfail)" : "default reply sent";
  ScriptOutcome out;
  bool script_error = false;
  switch (r.status) {
    case LUA_OK:
      out = returned_outcome(s, g, T, script, phase, r.nres, script_error, after_error);
      break;
    case LUA_YIELD:
      // Only mailhook's own I/O functions may suspend a hook.
      log::warning("session={} script={} hook={}: coroutine.yield outside a coroutine of the script; {}",
                   log::escape_text(s.start.session_id), script, name, after_error);
      script_error = true;
      release_thread(s);
      break;
    case LUA_ERRMEM:
      log::error("session={} script={} hook={}: out of --lua-memory; 451 sent", log::escape_text(s.start.session_id),
                 script, name);
      s.metrics->hook_overruns(phase).add();
      release_thread(s);
      lua_gc(g.L, LUA_GCCOLLECT);
      out = overrun();
      break;
    default: {
      const char* msg = lua_tostring(T, -1);
      const bool timed_out = g.timed_out;
      if (timed_out) {
        log::error("session={} script={} hook={}: stopped after --hook-timeout ({}); 451 sent",
                   log::escape_text(s.start.session_id), script, name, log::escape_text(msg ? msg : ""));
        s.metrics->hook_overruns(phase).add();
      } else {
        log::warning("session={} script={} hook={}: error: {}; {}", log::escape_text(s.start.session_id), script, name,
                     msg ? log::escape_text(msg) : "(no message)", after_error);
        script_error = true;
      }
      release_thread(s);
      if (timed_out) out = overrun();
      break;
    }
  }
  if (script_error) {
    s.metrics->hook_errors(script, phase).add();
    if (g.hook_error_tempfail) out = overrun();
  }
  if (out.replied) {
    out.result.script = i;
    out.result.script_name = script;
    out.result.phase = phase;
  }
  return out;
}

// --log-level debug and --trace: one line per hook call and its outcome.
void log_hook_call(const SessionContext& s, const std::string& script, bool shadow, HookPhase phase,
                   const std::string& traced_args, const ScriptOutcome& o, Clock::duration took) {
  const std::string_view name = hook_name(phase);
  const double ms = std::chrono::duration<double, std::milli>(took).count();
  if (!s.trace && log::enabled(log::Level::Debug)) {  // --log-level debug: every hook's outcome
    log::debug("session={} script={}{} hook={}: {} in {:.3f} ms", log::escape(s.start.session_id), script,
               shadow ? " (shadow)" : "", name, o.replied ? "\"" + log::reply_text(o.result.reply) + "\"" : "nothing",
               ms);
  }
  if (s.trace) {
    const std::string outcome = o.result.kind == HookOutcome::Kind::Overrun ? o.result.reply.summary() + " (stopped)"
                                : o.replied                                 ? o.result.reply.summary()
                                                                            : "nothing";
    log::info("trace session={} {}{} hook.{}({}) -> {} in {:.3f} ms", log::escape_text(s.start.session_id), script,
              shadow ? " (shadow)" : "", name, traced_args, outcome, ms);
  }
}

// The shadow guard: a shadow script's reply, message changes, limits and
// disconnects are logged (and counted in the shadow family) and undone,
// so the enforcing scripts after it decide as if it had not run.
class ShadowGuard {
 public:
  explicit ShadowGuard(const SessionContext& s) : changes_before_(s.changes.size()), pending_before_(s.pending) {}

  void undo(SessionContext& s, Generation& g, std::size_t i, HookPhase phase, const ScriptOutcome& o) const {
    const std::string& script = g.script_names[i];
    const std::string_view name = hook_name(phase);
    if (o.replied) {
      // A refusal gets the line an enforcing one would (would_reject:).
      if (o.result.reply.code >= 400) {
        log_refusal(s, "would_reject", name, script, o.result.reply);
      } else {
        log::info("session={} script={} hook={}: would reply \"{}\" (shadow)", log::escape_text(s.start.session_id),
                  script, name, log::reply_text(o.result.reply));
      }
      s.metrics->reply(g, i, phase, o.result.reply.code);  // a shadow script's table is the shadow family
    }
    if (s.changes.size() > changes_before_) {
      log::info("session={} script={} hook={}: would make {} message change(s) (shadow)",
                log::escape_text(s.start.session_id), script, name, s.changes.size() - changes_before_);
      s.changes.resize(changes_before_);
    }
    s.pending = pending_before_;
  }

 private:
  std::size_t changes_before_;
  SessionContext::Pending pending_before_;
};

}  // namespace

asio::awaitable<HookOutcome> run_hook(SessionContext& s, HookPhase phase, PushArgs args) {
  Generation& g = *s.generation;
  for (std::size_t i = 0; i < g.env_refs.size(); ++i) {
    if (!push_hook(g, i, hook_name(phase))) continue;
    const Clock::time_point started = Clock::now();
    lua_State* T = session_thread(s);
    lua_xmove(g.L, T, 1);
    const int nargs = args ? args(T) : 0;
    const std::string traced_args = s.trace ? render_args(T, nargs) : std::string();
    const bool shadow = g.script_shadow[i];
    const ShadowGuard guard(s);
    const Resumed resumed = co_await resume_hook(s, g, T, i, phase, nargs);
    if (resumed.dropped) co_return HookOutcome{};
    const auto took = Clock::now() - started;
    s.metrics->hook_seconds(phase).observe(std::chrono::duration<double>(took).count());
    ScriptOutcome o = hook_outcome(s, g, T, i, phase, resumed);
    log_hook_call(s, g.script_names[i], shadow, phase, traced_args, o, took);
    if (shadow) {
      guard.undo(s, g, i, phase, o);
      continue;
    }
    if (o.stop) {
      o.result.phase = phase;
      o.result.script = i;
      o.result.script_name = g.script_names[i];
      co_return std::move(o.result);
    }
  }
  co_return HookOutcome{};
}

}  // namespace mailhook::policyd
