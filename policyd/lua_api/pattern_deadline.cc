// open_patterns: the watched string.find & co. (patterns.h) with the one
// PatternWatch policyd gives them, the deadline of the hook that runs on
// the matching thread (lua_runtime/hook_runner.cc's count hook and this
// must agree: same deadline, same error, same escalation), so a match
// over client data stops where the hook would get its 451 4.3.0. It must
// never stop a match where the count hook would not stop Lua code; where
// no deadline hook is set, nothing stops a match.
#include <chrono>

#include "policyd/lua_api/modules.h"
#include "policyd/lua_api/patterns.h"
#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {
namespace {

// A deadline hook is set on the threads of running hooks (and the
// coroutines they resume), and on the loading thread under --load-timeout.
bool hook_deadline_passed(lua_State* L, void*) {
  if (lua_gethook(L) == nullptr || (lua_gethookmask(L) & LUA_MASKCOUNT) == 0) return false;
  const Generation& g = generation_of(L);
  return g.timed_out || std::chrono::steady_clock::now() >= g.deadline;
}

// As the deadline hook does: marks the overrun (the runner answers 451
// 4.3.0) and checks every instruction from now on, so a pcall around the
// match cannot carry on.
int raise_hook_timeout(lua_State* L, void*) {
  Generation& g = generation_of(L);
  g.timed_out = true;
  lua_sethook(L, lua_gethook(L), LUA_MASKCOUNT | LUA_MASKLINE, 1);
  if (g.loading) {
    return luaL_error(L, "loading ran past --load-timeout (%d ms)", static_cast<int>(g.load_timeout.count()));
  }
  return luaL_error(L, "hook ran past --hook-timeout (%d ms)", static_cast<int>(g.hook_timeout.count()));
}

// 4096 steps are some tens of microseconds of matching: the clock is read
// rarely enough to cost nothing and often enough to stop within a tick.
constexpr PatternWatch kHookDeadline{hook_deadline_passed, raise_hook_timeout, nullptr, 4096};

}  // namespace

void open_patterns(lua_State* L) { install_patterns(L, kHookDeadline); }

}  // namespace mailhook::policyd
