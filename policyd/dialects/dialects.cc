// The dialect adapters' glue: load the embedded Lua, call prelude, detect
// and adapt around each script's load.
#include "policyd/dialects/dialects.h"

#include <cstring>

#include "policyd/dialects/dialect_sources.h"

namespace mailhook::policyd {
namespace {

constexpr const char* kSmtpfKey = "mailhook.dialect.smtpf";

// Calls M.<fn>(env) of the smtpf module; results left on the stack.
bool call(lua_State* L, const char* fn, int env, int nresults, std::string& error) {
  lua_getfield(L, LUA_REGISTRYINDEX, kSmtpfKey);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_pushvalue(L, env);
  if (lua_pcall(L, 1, nresults, 0) != LUA_OK) {
    error = lua_tostring(L, -1) ? lua_tostring(L, -1) : "dialect adapter failed";
    lua_pop(L, 1);
    return false;
  }
  return true;
}

bool has_hook_functions(lua_State* L, int env) {
  lua_getfield(L, env, "hook");
  bool any = false;
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      any = any || lua_type(L, -1) == LUA_TFUNCTION;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return any;
}

}  // namespace

bool load_dialects(lua_State* L, std::string& error) {
  if (luaL_loadbufferx(L, dialects::kSmtpfLua, std::strlen(dialects::kSmtpfLua), "=smtpf-dialect", "t") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    error = std::string("bug: the smtpf dialect adapter does not load: ") + lua_tostring(L, -1);
    lua_pop(L, 1);
    return false;
  }
  lua_setfield(L, LUA_REGISTRYINDEX, kSmtpfKey);
  return true;
}

bool prepare_env(lua_State* L, int env, std::string& error) { return call(L, "prelude", env, 0, error); }

std::string adapt_script(lua_State* L, int env, const std::string& wanted, const std::string& script,
                         std::string& error) {
  if (wanted == "smtpe") return "smtpe";
  if (!call(L, "detect", env, 1, error)) return "";
  const bool smtpf = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!smtpf) {
    if (wanted == "smtpf") {
      error = script + ": --dialect smtpf, but the script defines no smtp.do_* call-back";
      return "";
    }
    return "smtpe";
  }
  if (has_hook_functions(L, env)) {
    error = script + ": defines both hook.* (smtpe) and smtp.do_* (smtpf) call-backs; one script, one dialect "
                     "(chain two scripts instead)";
    return "";
  }
  if (!call(L, "adapt", env, 0, error)) return "";
  return "smtpf";
}

}  // namespace mailhook::policyd
