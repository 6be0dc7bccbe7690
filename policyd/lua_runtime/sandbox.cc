// The sandbox, by allow-list: the standard libraries a policy needs, and
// nothing that would end, fork, hang or crash policyd, or reach a file or
// a variable the operator did not grant. Must never leave a way to run
// Lua code outside the deadline hook (a __gc finalizer, a coroutine
// without the hook), to load bytecode (it is not verified: a crafted
// chunk crashes the VM), or to call the unwrapped io/os functions.
// File and environment grants are in file_grant.cc.
#include "policyd/lua_runtime/loader.h"

#include <initializer_list>
#include <string_view>

#include "mailcore/telemetry/log.h"
#include "policyd/lua_runtime/file_grant.h"
#include "policyd/lua_runtime/script_clock.h"

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

// Calls the original function (upvalue 1) with this call's arguments and
// returns all its results.
int call_original(lua_State* L) {
  const int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

// load: text chunks only. Lua does not verify bytecode; a corrupted or
// hand-made binary chunk crashes the VM.
int safe_load(lua_State* L) {
  const char* mode = luaL_optstring(L, 3, "bt");
  if (std::string_view(mode).find('t') == std::string_view::npos) {
    luaL_pushfail(L);
    lua_pushstring(L, "binary chunks are not allowed (text chunks only)");
    return 2;
  }
  if (lua_gettop(L) < 3) lua_settop(L, 3);
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  return call_original(L);
}

// setmetatable: Lua runs __gc metamethods with hooks off, so a finalizer
// would escape --hook-timeout; scripts get no finalizers at all. An object
// is marked for finalization only when its metatable has __gc as it is
// set, so checking here covers a __gc added to the metatable later.
int safe_setmetatable(lua_State* L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    const bool gc = lua_rawget(L, 2) != LUA_TNIL;
    lua_pop(L, 1);
    if (gc) return luaL_error(L, "__gc metamethods are not allowed");
  }
  return call_original(L);
}

// getmetatable: never a userdata's metatable (its __gc is C code a script
// could otherwise replace with a Lua finalizer); its __metatable if set.
int safe_getmetatable(lua_State* L) {
  luaL_checkany(L, 1);
  if (lua_type(L, 1) == LUA_TUSERDATA) {
    if (luaL_getmetafield(L, 1, "__metatable") == LUA_TNIL) lua_pushnil(L);
    return 1;
  }
  return call_original(L);
}

// collectgarbage: no stopping or retuning the collector (a stopped one
// makes every allocation near --lua-memory a full emergency collection).
int safe_collectgarbage(lua_State* L) {
  const char* opt = luaL_optstring(L, 1, "collect");
  const std::string_view o = opt;
  if (o != "collect" && o != "count" && o != "step" && o != "isrunning") {
    return luaL_error(L, "collectgarbage(\"%s\") is not allowed", opt);
  }
  return call_original(L);
}

// os.time() and os.date(fmt) without a time: the scripts' clock
// (script_clock.h); with a table or a time they are Lua's own.
int script_os_time(lua_State* L) {
  if (!lua_isnoneornil(L, 1)) return call_original(L);
  lua_settop(L, 0);
  lua_pushinteger(L, static_cast<lua_Integer>(script_now(L)));
  return 1;
}

int script_os_date(lua_State* L) {
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);  // the format (nil: Lua's default "%c")
    lua_pushinteger(L, static_cast<lua_Integer>(script_now(L)));
  }
  return call_original(L);
}

// coroutine.resume: a new thread copies its creator's hook, and Lua code
// only runs under a hook when its thread has one; so the resumed thread
// gets the resumer's deadline hook first (a coroutine made at load time
// and resumed by a hook is bounded by that hook's --hook-timeout).
int safe_resume(lua_State* L) {
  lua_State* co = lua_tothread(L, 1);
  if (co != nullptr && co != L) lua_sethook(co, lua_gethook(L), lua_gethookmask(L), lua_gethookcount(L));
  return call_original(L);
}

// print: to policyd's log, escaped, never to stdout (a journal would take
// a line break there as a new log line).
int safe_print(lua_State* L) {
  const int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; ++i) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, nullptr);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  luaL_where(L, 1);
  // No Lua error can happen from here on (C++ strings are alive).
  std::size_t len = 0;
  const char* text = lua_tolstring(L, -2, &len);
  const char* where = lua_tostring(L, -1);
  const SessionContext* s = current_session(L);
  log::write(log::Level::Info, fmt::format("lua session={} {}print: {}", s ? log::escape_text(s->start.session_id) : "-",
                                           log::escape_text(where), log::escape_text({text, len})));
  return 0;
}

// Replaces global table `lib`'s field `name` (or a global when lib is
// nullptr) by `fn` with the original as upvalue 1.
void wrap(lua_State* L, const char* lib, const char* name, lua_CFunction fn) {
  if (lib) {
    lua_getglobal(L, lib);
  } else {
    lua_pushglobaltable(L);
  }
  lua_getfield(L, -1, name);
  lua_pushcclosure(L, fn, 1);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

// coroutine.wrap on top of the wrapped coroutine.resume, so its thread
// gets the caller's hook too; errors propagate as in Lua 5.4's own.
constexpr const char* kCoroutineWrap = R"lua(
local create, resume, status, close = coroutine.create, coroutine.resume, coroutine.status, coroutine.close
local error = error
local function finish(co, ok, ...)
  if ok then return ... end
  if status(co) == "dead" then close(co) end
  error((...), 2)
end
coroutine.wrap = function(f)
  local co = create(f)
  return function(...) return finish(co, resume(co, ...)) end
end
)lua";

void install_lua(lua_State* L, const char* source, const char* name) {
  if (luaL_loadbufferx(L, source, std::string_view(source).size(), name, "t") != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK) {
    log::error("bug: {} does not load: {}", name, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

}  // namespace

void apply_sandbox(lua_State* L) {
  // Base library: no file loaders, no bytecode.
  for (const char* name : {"dofile", "loadfile"}) {
    lua_pushnil(L);
    lua_setglobal(L, name);
  }
  wrap(L, nullptr, "load", safe_load);
  wrap(L, nullptr, "setmetatable", safe_setmetatable);
  wrap(L, nullptr, "getmetatable", safe_getmetatable);
  wrap(L, nullptr, "collectgarbage", safe_collectgarbage);
  lua_pushcfunction(L, safe_print);
  lua_setglobal(L, "print");
  lua_getglobal(L, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  wrap(L, "coroutine", "resume", safe_resume);
  install_lua(L, kCoroutineWrap, "=sandbox-coroutine");
  lua_getglobal(L, "os");
  keep_only(L, {"clock", "date", "difftime", "time", "getenv", "remove", "rename"});
  lua_pop(L, 1);
  wrap(L, "os", "time", script_os_time);
  wrap(L, "os", "date", script_os_date);
  lua_getglobal(L, "io");
  keep_only(L, {"open", "lines", "type", "close"});
  lua_pop(L, 1);
  lua_getglobal(L, "debug");
  keep_only(L, {"traceback", "getinfo"});
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  keep_only(L, {"loaded", "preload", "config"});
  lua_pop(L, 1);
  // A file handle's metatable holds io's C __gc: hidden from scripts.
  luaL_getmetatable(L, LUA_FILEHANDLE);
  if (lua_istable(L, -1)) {
    lua_pushliteral(L, "file");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  install_file_grants(L);
}

}  // namespace mailhook::policyd
