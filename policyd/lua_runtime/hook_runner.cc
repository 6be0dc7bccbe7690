// Hook calls: deadline by count hook, reply validation, thread recycling.
#include "policyd/lua_runtime/hook_runner.h"

#include <asio/experimental/as_tuple.hpp>

#include "mailcore/smtp/reply_text.h"
#include "mailcore/telemetry/log.h"
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

void release_thread(SessionContext& s) {
  if (s.thread_ref != LUA_NOREF && s.generation) luaL_unref(s.generation->L, LUA_REGISTRYINDEX, s.thread_ref);
  s.thread_ref = LUA_NOREF;
  s.thread = nullptr;
}

// --trace: the arguments of a hook call as one log token.
static std::string render_args(lua_State* T, int nargs) {
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

static std::string outcome_text(const HookOutcome& o, bool replied) {
  if (o.kind == HookOutcome::Kind::Overrun) return o.reply.summary() + " (stopped)";
  return replied ? o.reply.summary() : "nothing";
}

asio::awaitable<HookOutcome> run_hook(SessionContext& s, HookPhase phase, PushArgs args) {
  Generation& g = *s.generation;
  const std::string_view name = hook_name(phase);
  for (std::size_t i = 0; i < g.env_refs.size(); ++i) {
    if (!push_hook(g, i, name)) continue;
    const Clock::time_point started = Clock::now();
    lua_State* T = session_thread(s);
    lua_xmove(g.L, T, 1);
    const int nargs = args ? args(T) : 0;
    const std::string traced_args = s.trace ? render_args(T, nargs) : std::string();
    // A shadow script's changes, limits and disconnects are undone after it.
    const bool shadow = g.script_shadow[i];
    const std::size_t changes_before = s.changes.size();
    const SessionContext::Pending pending_before = s.pending;
    s.phase = phase;
    arm_deadline(g, s, T, g.hook_timeout);
    int nres = 0;
    int status = lua_resume(T, g.L, nargs, &nres);
    // Suspended on I/O: wait without holding the worker, then go on with
    // what was left of the hook's time (the wait is bounded on its own,
    // by --dns-timeout), the same client and the same memory cap.
    while (status == LUA_YIELD && s.resume_when) {
      const Clock::duration left = g.deadline - Clock::now();
      g.current = nullptr;
      while (!s.aborted && !s.resume_when()) {
        co_await s.waker->wait();
      }
      s.resume_when = nullptr;
      if (s.aborted) {  // the session ended meanwhile: drop the hook
        log::info("session={} {} hook.{}: session ended while waiting", log::escape_text(s.start.session_id), g.script_names[i], name);
        release_thread(s);
        co_return HookOutcome{};
      }
      s.phase = phase;
      arm_deadline(g, s, T, std::max(left, Clock::duration::zero()));
      status = lua_resume(T, g.L, 0, &nres);
    }
    g.current = nullptr;
    s.resume_when = nullptr;
    const auto took = Clock::now() - started;
    s.metrics->hook_seconds(phase).observe(std::chrono::duration<double>(took).count());
    const std::string& script = g.script_names[i];
    HookOutcome result;
    bool replied = false;  // a reply (or an overrun), as opposed to nothing
    bool stop = true;      // an enforcing script's outcome ends the chain
    switch (status) {
      case LUA_OK: {
        if (g.timed_out) {
          // The deadline passed in a coroutine the hook resumed (which
          // returned the error to it): the hook's answer cannot stand.
          lua_settop(T, 0);
          log::error("session={} {} hook.{}: stopped after --hook-timeout (in a coroutine); 451 sent",
                     log::escape_text(s.start.session_id), script, name);
          s.metrics->hook_overruns(phase).add();
          result = HookOutcome{HookOutcome::Kind::Overrun, overrun_reply()};
          replied = true;
          break;
        }
        if (nres == 0 || lua_isnil(T, -nres)) {
          lua_settop(T, 0);
          stop = false;  // no reply: the next script may decide
          break;
        }
        std::size_t len = 0;
        const char* text = lua_type(T, -nres) == LUA_TSTRING ? lua_tolstring(T, -nres, &len) : nullptr;
        smtp::ParsedReply parsed = text ? smtp::parse_reply({text, len}) : smtp::ParsedReply{};
        lua_settop(T, 0);
        if (parsed.reply) {
          result = HookOutcome{HookOutcome::Kind::Replied, std::move(*parsed.reply)};
          replied = true;
          break;
        }
        log::warning("session={} {} hook.{}: malformed reply ({}); default reply sent", log::escape_text(s.start.session_id),
                     script, name, text ? smtp::reply_error_text(parsed.error) : "not a string");
        s.metrics->hook_errors(phase).add();
        break;
      }
      case LUA_YIELD:
        // Only mailhook's own I/O functions may suspend a hook.
        log::warning("session={} {} hook.{}: coroutine.yield outside a coroutine of the script; default reply sent",
                     log::escape_text(s.start.session_id), script, name);
        s.metrics->hook_errors(phase).add();
        release_thread(s);
        break;
      case LUA_ERRMEM:
        log::error("session={} {} hook.{}: out of --lua-memory; 451 sent", log::escape_text(s.start.session_id), script, name);
        s.metrics->hook_overruns(phase).add();
        release_thread(s);
        lua_gc(g.L, LUA_GCCOLLECT);
        result = HookOutcome{HookOutcome::Kind::Overrun, overrun_reply()};
        replied = true;
        break;
      default: {
        const char* msg = lua_tostring(T, -1);
        const bool timed_out = g.timed_out;
        if (timed_out) {
          log::error("session={} {} hook.{}: stopped after --hook-timeout ({}); 451 sent", log::escape_text(s.start.session_id),
                     script, name, log::escape_text(msg ? msg : ""));
          s.metrics->hook_overruns(phase).add();
        } else {
          log::warning("session={} {} hook.{}: error: {}; default reply sent", log::escape_text(s.start.session_id), script, name,
                       msg ? log::escape_text(msg) : "(no message)");
          s.metrics->hook_errors(phase).add();
        }
        release_thread(s);
        if (timed_out) {
          result = HookOutcome{HookOutcome::Kind::Overrun, overrun_reply()};
          replied = true;
        }
        break;
      }
    }
    if (s.trace) {
      log::info("trace session={} {}{} hook.{}({}) -> {} in {:.3f} ms", log::escape_text(s.start.session_id), script,
                shadow ? " (shadow)" : "", name, traced_args, outcome_text(result, replied),
                std::chrono::duration<double, std::milli>(took).count());
    }
    if (shadow) {
      if (replied) {
        log::info("session={} {} hook.{}: would reply {} (shadow)", log::escape_text(s.start.session_id), script, name,
                  result.reply.summary());
        s.metrics->reply(g, i, phase, result.reply.code);  // a shadow script's table is the shadow family
      }
      if (s.changes.size() > changes_before) {
        log::info("session={} {} hook.{}: would make {} message change(s) (shadow)", log::escape_text(s.start.session_id), script,
                  name, s.changes.size() - changes_before);
        s.changes.resize(changes_before);
      }
      s.pending = pending_before;
      continue;
    }
    if (stop) {
      result.phase = phase;
      result.script = i;
      co_return result;
    }
  }
  co_return HookOutcome{};
}

}  // namespace mailhook::policyd
