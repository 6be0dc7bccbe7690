// Every dialect, declared in one table (kDialects): smtpe, the native one
// (its event -> hook mapping is C++, smtpe.cc: the hot path), and the Lua
// adapters over it (smtpf, qpsmtpd, vpop3: embedded modules). The glue:
// load the adapters, give each script every dialect's globals, then
// recognise and adapt the script. Load time only.
#include "policyd/dialects/dialects.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "policyd/dialects/dialect_sources.h"

namespace mailhook::policyd {
namespace {

// A module a dialect's adapter builds on, loaded before it: its chunk's
// result is the adapter's parts[name].
struct Part {
  const char* name;
  const char* source;
};

struct Dialect {
  const char* name;
  // The adapter's Lua source; nullptr for smtpe, whose hooks the session
  // calls directly (smtpe.cc) and which needs no adapting.
  const char* source;
  // What --dialect auto looks for, for the error messages.
  const char* signature;
  // Its modules, in load order (qpsmtpd: the object model, then the
  // plugin runner); each sees the ones before it.
  std::initializer_list<Part> parts = {};
};

const Dialect kDialects[] = {
    {"smtpe", nullptr, "hook.* functions"},
    {"smtpf", dialects::kSmtpfLua, "smtp.do_* call-backs"},
    {"qpsmtpd", dialects::kQpsmtpdLua, "hook_* functions",
     {{"qpsmtpd_objects", dialects::kQpsmtpdObjectsLua}, {"qpsmtpd_plugins", dialects::kQpsmtpdPluginsLua}}},
    {"vpop3", dialects::kVpop3Lua, "VPOP3 global functions (Start, DoMAILFROM, ProcessMessage, …)"},
};

// The native dialect: what a script is when no adapter recognises it.
const char* const kNative = kDialects[0].name;

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

// Runs one embedded chunk with (host, parts) and leaves its result on the
// stack. `host` is what the adapter may know of policyd's environment
// (scripts' os.getenv is limited to --lua-env): qpsmtpd's QPSMTPD_CONFIG,
// the directory of its config files; `parts` the table at `parts_index`.
bool run_chunk(lua_State* L, const char* dialect, const char* name, const char* source, int parts_index,
               std::string& error) {
  const std::string chunk = std::string("=") + name + "-dialect";
  if (luaL_loadbufferx(L, source, std::strlen(source), chunk.c_str(), "t") != LUA_OK) {
    error = std::string("bug: the ") + dialect + " dialect adapter does not load: " + lua_tostring(L, -1);
    lua_pop(L, 1);
    return false;
  }
  lua_newtable(L);
  if (const char* dir = std::getenv("QPSMTPD_CONFIG")) {
    lua_pushstring(L, dir);
    lua_setfield(L, -2, "qpsmtpd_config");
  }
  lua_pushvalue(L, parts_index);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    error = std::string("bug: the ") + dialect + " dialect adapter does not load: " + lua_tostring(L, -1);
    lua_pop(L, 1);
    return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> dialect_choices() {
  std::vector<std::string> out{"auto"};
  for (const Dialect& d : kDialects) out.emplace_back(d.name);
  return out;
}

bool load_dialects(lua_State* L, std::string& error) {
  for (const Dialect& d : kDialects) {
    if (d.source == nullptr) continue;
    lua_newtable(L);  // the dialect's parts
    const int parts = lua_gettop(L);
    for (const Part& p : d.parts) {
      if (!run_chunk(L, d.name, p.name, p.source, parts, error)) return lua_pop(L, 1), false;
      lua_setfield(L, parts, p.name);
    }
    if (!run_chunk(L, d.name, d.name, d.source, parts, error)) return lua_pop(L, 1), false;
    lua_setfield(L, LUA_REGISTRYINDEX, registry_key(d).c_str());
    lua_pop(L, 1);
  }
  return true;
}

bool prepare_env(lua_State* L, int env, std::string& error) {
  for (const Dialect& d : kDialects) {
    if (d.source == nullptr) continue;
    if (!call(L, d, "prelude", env, nullptr, 0, error)) return false;
  }
  return true;
}

std::string adapt_script(lua_State* L, int env, const std::string& wanted, const std::string& script,
                         const std::string& source, std::string& error) {
  if (wanted == kNative) return kNative;
  std::vector<const Dialect*> found;
  for (const Dialect& d : kDialects) {
    if (d.source == nullptr) continue;  // smtpe: what no adapter recognises
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
    if (found.empty()) return kNative;
    chosen = found.front();
  } else {
    for (const Dialect* d : found) {
      if (wanted == d->name) chosen = d;
    }
    if (chosen == nullptr) {
      for (const Dialect& d : kDialects) {
        if (d.source != nullptr && wanted == d.name) error = script + ": --dialect " + wanted + ", but the script defines no " + d.signature;
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
