// Hook calls: deadline by count hook, reply validation, thread recycling.
#include "policyd/lua_runtime/hook_runner.h"

#include "mailcore/smtp/reply_text.h"
#include "mailcore/telemetry/log.h"

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
  luaL_error(L, "hook ran past --hook-timeout (%d ms)", static_cast<int>(g.hook_timeout.count()));
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
  lua_rawgeti(L, LUA_REGISTRYINDEX, g.env_refs[i]);
  if (lua_getfield(L, -1, "hook") != LUA_TTABLE) {
    lua_pop(L, 2);
    return false;
  }
  const bool fn = lua_getfield(L, -1, std::string(name).c_str()) == LUA_TFUNCTION;
  lua_remove(L, -2);
  lua_remove(L, -2);
  if (!fn) lua_pop(L, 1);
  return fn;
}

}  // namespace

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

void release_thread(SessionContext& s) {
  if (s.thread_ref != LUA_NOREF && s.generation) luaL_unref(s.generation->L, LUA_REGISTRYINDEX, s.thread_ref);
  s.thread_ref = LUA_NOREF;
  s.thread = nullptr;
}

HookOutcome run_hook(SessionContext& s, HookPhase phase, const PushArgs& args) {
  Generation& g = *s.generation;
  const std::string_view name = hook_name(phase);
  for (std::size_t i = 0; i < g.env_refs.size(); ++i) {
    if (!push_hook(g, i, name)) continue;
    lua_State* T = session_thread(s);
    lua_xmove(g.L, T, 1);
    const int nargs = args ? args(T) : 0;
    s.phase = phase;
    g.current = &s;
    g.timed_out = false;
    g.deadline = std::chrono::steady_clock::now() + g.hook_timeout;
    lua_sethook(T, deadline_hook, LUA_MASKCOUNT, kCheckEvery);
    int nres = 0;
    const int status = lua_resume(T, g.L, nargs, &nres);
    g.current = nullptr;
    const std::string& script = g.script_names[i];
    switch (status) {
      case LUA_OK: {
        if (nres == 0 || lua_isnil(T, -nres)) {
          lua_settop(T, 0);
          continue;  // no reply: the next script may decide
        }
        std::size_t len = 0;
        const char* text = lua_type(T, -nres) == LUA_TSTRING ? lua_tolstring(T, -nres, &len) : nullptr;
        smtp::ParsedReply parsed = text ? smtp::parse_reply({text, len}) : smtp::ParsedReply{};
        lua_settop(T, 0);
        if (parsed.reply) return {HookOutcome::Kind::Replied, std::move(*parsed.reply)};
        log::warning("session={} {} hook.{}: malformed reply ({}); default reply sent", s.start.session_id,
                     script, name, text ? smtp::reply_error_text(parsed.error) : "not a string");
        return {};
      }
      case LUA_YIELD:
        // Only dns.wait may suspend a hook, and it is not built yet.
        log::warning("session={} {} hook.{}: yielded outside a wait; default reply sent", s.start.session_id,
                     script, name);
        release_thread(s);
        return {};
      case LUA_ERRMEM:
        log::error("session={} {} hook.{}: out of --lua-memory; 451 sent", s.start.session_id, script, name);
        release_thread(s);
        lua_gc(g.L, LUA_GCCOLLECT);
        return {HookOutcome::Kind::Overrun, overrun_reply()};
      default: {
        const char* msg = lua_tostring(T, -1);
        const bool timed_out = g.timed_out;
        if (timed_out) {
          log::error("session={} {} hook.{}: stopped after --hook-timeout ({}); 451 sent", s.start.session_id,
                     script, name, msg ? msg : "");
        } else {
          log::warning("session={} {} hook.{}: error: {}; default reply sent", s.start.session_id, script, name,
                       msg ? msg : "(no message)");
        }
        release_thread(s);
        if (timed_out) return {HookOutcome::Kind::Overrun, overrun_reply()};
        return {};
      }
    }
  }
  return {};
}

}  // namespace mailhook::policyd
