// The dialect adapters' glue: load the embedded Lua modules, give each
// script every dialect's globals, then recognise and adapt the script.
#include "policyd/dialects/dialects.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "policyd/dialects/dialect_sources.h"

namespace mailhook::policyd {
namespace {

struct Dialect {
  const char* name;
  const char* source;
  // What --dialect auto looks for, for the error messages.
  const char* signature;
};

const Dialect kDialects[] = {
    {"smtpf", dialects::kSmtpfLua, "smtp.do_* call-backs"},
    {"qpsmtpd", dialects::kQpsmtpdLua, "hook_* functions"},
    {"vpop3", dialects::kVpop3Lua, "VPOP3 global functions (Start, DoMAILFROM, ProcessMessage, …)"},
};

std::string registry_key(const Dialect& d) { return std::string("mailhook.dialect.") + d.name; }

// Calls M.<fn>(env [, script, source]) of a dialect module; `nresults`
// left on the stack.
bool call(lua_State* L, const Dialect& d, const char* fn, int env, const std::string* script, int nresults,
          std::string& error, const std::string* source = nullptr) {
  lua_getfield(L, LUA_REGISTRYINDEX, registry_key(d).c_str());
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_pushvalue(L, env);
  if (script) lua_pushlstring(L, script->data(), script->size());
  if (source) lua_pushlstring(L, source->data(), source->size());
  if (lua_pcall(L, 1 + (script ? 1 : 0) + (source ? 1 : 0), nresults, 0) != LUA_OK) {
    error = std::string(d.name) + " dialect: " + (lua_tostring(L, -1) ? lua_tostring(L, -1) : "adapter failed");
    lua_pop(L, 1);
    return false;
  }
  return true;
}

bool has_hook_functions(lua_State* L, int env) {
  lua_pushliteral(L, "hook");
  lua_rawget(L, env);  // raw: no script metamethod outside a protected call
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
  for (const Dialect& d : kDialects) {
    const std::string chunk = std::string("=") + d.name + "-dialect";
    // Each adapter gets what it may know of policyd's environment as its
    // chunk argument (scripts' os.getenv is limited to --lua-env):
    // qpsmtpd's QPSMTPD_CONFIG, the directory of its config files.
    if (luaL_loadbufferx(L, d.source, std::strlen(d.source), chunk.c_str(), "t") != LUA_OK) {
      error = std::string("bug: the ") + d.name + " dialect adapter does not load: " + lua_tostring(L, -1);
      lua_pop(L, 1);
      return false;
    }
    lua_newtable(L);
    if (const char* dir = std::getenv("QPSMTPD_CONFIG")) {
      lua_pushstring(L, dir);
      lua_setfield(L, -2, "qpsmtpd_config");
    }
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      error = std::string("bug: the ") + d.name + " dialect adapter does not load: " + lua_tostring(L, -1);
      lua_pop(L, 1);
      return false;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, registry_key(d).c_str());
  }
  return true;
}

bool prepare_env(lua_State* L, int env, std::string& error) {
  for (const Dialect& d : kDialects) {
    if (!call(L, d, "prelude", env, nullptr, 0, error)) return false;
  }
  return true;
}

std::string adapt_script(lua_State* L, int env, const std::string& wanted, const std::string& script,
                         const std::string& source, std::string& error) {
  if (wanted == "smtpe") return "smtpe";
  std::vector<const Dialect*> found;
  for (const Dialect& d : kDialects) {
    if (!call(L, d, "detect", env, nullptr, 1, error)) return "";
    if (lua_toboolean(L, -1)) found.push_back(&d);
    lua_pop(L, 1);
  }
  const Dialect* chosen = nullptr;
  if (wanted == "auto") {
    if (found.size() > 1) {
      error = script + ": defines both " + found[0]->signature + " (" + found[0]->name + ") and " +
              found[1]->signature + " (" + found[1]->name + "); one script, one dialect (or choose with --dialect)";
      return "";
    }
    if (found.empty()) return "smtpe";
    chosen = found.front();
  } else {
    for (const Dialect* d : found) {
      if (wanted == d->name) chosen = d;
    }
    if (chosen == nullptr) {
      for (const Dialect& d : kDialects) {
        if (wanted == d.name) error = script + ": --dialect " + wanted + ", but the script defines no " + d.signature;
      }
      return "";
    }
  }
  if (has_hook_functions(L, env)) {
    error = script + ": defines both hook.* (smtpe) and " + chosen->signature + " (" + chosen->name +
            "); one script, one dialect (chain two scripts instead)";
    return "";
  }
  if (!call(L, *chosen, "adapt", env, &script, 0, error, &source)) return "";
  return chosen->name;
}

}  // namespace mailhook::policyd
