// The `hook` table: each script gets its own, inside its own environment,
// so chained scripts each define hook.rcpt without clobbering another's.
#include "policyd/lua_api/modules.h"

namespace mailhook::policyd {

void push_script_env(lua_State* L) {
  lua_newtable(L);                     // env
  lua_newtable(L);
  lua_setfield(L, -2, "hook");         // env.hook = {}
  lua_newtable(L);                     // metatable
  lua_pushglobaltable(L);
  lua_setfield(L, -2, "__index");      // reads fall back to _G
  lua_setmetatable(L, -2);
}

}  // namespace mailhook::policyd
