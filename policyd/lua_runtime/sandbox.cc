// The sandbox, by allow-list: the standard libraries a policy needs, and
// nothing that would end, fork or hang policyd (os.exit, os.execute,
// io.popen, loading C code, debug hooks). Scripts keep io.open / io.lines
// to read the message file of hook.dot.
#include "policyd/lua_runtime/loader.h"

#include <initializer_list>
#include <string_view>

namespace mailhook::policyd {
namespace {

// Keeps only `allowed` in the library table on top of the stack.
void keep_only(lua_State* L, std::initializer_list<std::string_view> allowed) {
  lua_pushnil(L);
  std::vector<std::string> drop;
  while (lua_next(L, -2) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) continue;
    const std::string_view key = lua_tostring(L, -1);
    bool keep = false;
    for (auto a : allowed) keep = keep || a == key;
    if (!keep) drop.emplace_back(key);
  }
  for (const auto& k : drop) {
    lua_pushnil(L);
    lua_setfield(L, -2, k.c_str());
  }
}

}  // namespace

void apply_sandbox(lua_State* L) {
  lua_getglobal(L, "os");
  keep_only(L, {"clock", "date", "difftime", "getenv", "time", "tmpname", "remove", "rename"});
  lua_pop(L, 1);
  lua_getglobal(L, "io");
  keep_only(L, {"open", "lines", "read", "write", "type", "close", "stderr", "stdout"});
  lua_pop(L, 1);
  lua_getglobal(L, "debug");
  keep_only(L, {"traceback", "getinfo"});
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  keep_only(L, {"loaded", "path", "preload", "searchers", "searchpath", "config"});
  lua_pushstring(L, "");
  lua_setfield(L, -2, "cpath");  // no C modules
  lua_pop(L, 1);
}

}  // namespace mailhook::policyd
