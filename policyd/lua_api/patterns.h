// string.find, string.match, string.gmatch and string.gsub with Lua 5.4's
// semantics, over pattern_matcher.h, so that a pattern over client data
// stops when the hook runs out of time (finding 8(d) of issue 19: stock
// Lua matches in C, where the count hook of --hook-timeout never fires).
// install_patterns never copies the watch: it must outlive the state.
// Knows nothing of policyd's runtime; pattern_deadline.cc gives it the
// hook deadline.
#pragma once

#include <lua.hpp>

#include <cstdint>

namespace mailhook::policyd {

// When to stop a match, and how: `expired` is asked every `check_every`
// steps and must not raise; `raise` raises the Lua error of a stopped
// match (it never returns).
struct PatternWatch {
  bool (*expired)(lua_State* L, void* context);
  int (*raise)(lua_State* L, void* context);
  void* context;
  std::uint32_t check_every;
};

// Replaces find, match, gmatch and gsub in the string library table (the
// string metatable's __index, so ("x"):find too) with the watched ones.
void install_patterns(lua_State* L, const PatternWatch& watch);

}  // namespace mailhook::policyd
