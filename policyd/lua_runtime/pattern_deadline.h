// The hook deadline for the string pattern functions (lua_api/patterns.h):
// a match stops where the count hook of --hook-timeout would stop Lua code
// on the same thread, with the same error, so the hook gets its 451 4.3.0.
// Where no deadline hook is set (loading scripts), nothing stops a match.
#pragma once

#include <lua.hpp>

namespace mailhook::policyd {

// Installs the watched string.find/match/gmatch/gsub into L's string table.
void open_patterns(lua_State* L);

}  // namespace mailhook::policyd
