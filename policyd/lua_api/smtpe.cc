// `smtpe`: the engine's variables. bin_version, api_version and copyright
// are constants; host is the calling session's front host name.
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {
namespace {

int smtpe_index(lua_State* L) {
  const std::string_view key = luaL_checkstring(L, 2);
  const SessionContext* s = current_session(L);
  if (key == "host" && s != nullptr) {
    lua_pushlstring(L, s->start.local_host.data(), s->start.local_host.size());
  } else {
    lua_pushnil(L);
  }
  return 1;
}

}  // namespace

void open_smtpe(lua_State* L) {
  lua_newtable(L);
  lua_pushstring(L, "mailhook/" MAILHOOK_VERSION);
  lua_setfield(L, -2, "bin_version");
  lua_pushstring(L, "1.0");  // the smtpe API as the seed documents it
  lua_setfield(L, -2, "api_version");
  lua_pushstring(L, "Copyright 2026 the mailhook authors");
  lua_setfield(L, -2, "copyright");
  lua_newtable(L);
  lua_pushcfunction(L, smtpe_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setglobal(L, "smtpe");
}

}  // namespace mailhook::policyd
