// Script loading: the modules the runtime was given, one environment per
// script, capabilities from the hook tables the scripts filled in.
// Names no Lua module itself (RuntimeConfig::modules).
#include "policyd/lua_runtime/loader.h"

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "policyd/dialects/dialects.h"

#include "policyd/lua_runtime/file_grant.h"
#include "policyd/lua_runtime/hook_runner.h"

namespace mailhook::policyd {
namespace {

enum class Needs { Nothing, Message, MessageIfAsked };

struct HookEvent {
  const char* hook;
  EventKind kind;
  // Message: the hook sees the bytes. MessageIfAsked: hook.dot/forward get
  // the message file only when they take a parameter (or client.msg_file
  // is read); `function hook.dot()` changes headers without any body
  // crossing the wire.
  Needs needs;
};

// smtpe hook -> the event the front must send for it.
constexpr HookEvent kHookEvents[] = {
    {"helo", EventKind::Helo, Needs::Nothing},
    {"ehlo", EventKind::Ehlo, Needs::Nothing},
    {"auth", EventKind::Auth, Needs::Nothing},
    {"mail", EventKind::Mail, Needs::Nothing},
    {"rcpt", EventKind::Rcpt, Needs::Nothing},
    {"data", EventKind::Data, Needs::Nothing},
    {"content", EventKind::MessageChunk, Needs::Message},
    {"header", EventKind::MessageChunk, Needs::Message},
    {"eoh", EventKind::MessageChunk, Needs::Message},
    {"body", EventKind::MessageChunk, Needs::Message},
    {"dot", EventKind::EndOfMessage, Needs::MessageIfAsked},
    {"forward", EventKind::EndOfMessage, Needs::MessageIfAsked},
    {"rset", EventKind::Rset, Needs::Nothing},
    {"noop", EventKind::Noop, Needs::Nothing},
    {"help", EventKind::Help, Needs::Nothing},
    {"quit", EventKind::Quit, Needs::Nothing},
    {"unknown", EventKind::Unknown, Needs::Nothing},
    {"xclient", EventKind::Xclient, Needs::Nothing},
    {"reset", EventKind::Reset, Needs::Nothing},
    {"error", EventKind::Error, Needs::Nothing},
    {"close", EventKind::Close, Needs::Nothing},
    {"vrfy", EventKind::Vrfy, Needs::Nothing},
    {"expn", EventKind::Expn, Needs::Nothing},
};

// Whether the function on top of L's stack declares a parameter (or `...`).
bool takes_arguments(lua_State* L) {
  lua_Debug ar;
  lua_pushvalue(L, -1);
  if (!lua_getinfo(L, ">u", &ar)) return true;
  return ar.nparams > 0 || ar.isvararg;
}

// The script's text (for the dialect adapters, which open no file).
std::string read_source(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Whether the script's text names client.msg_file anywhere (a hook.dot()
// without a parameter may still read the file through it).
bool mentions_msg_file(const std::string& source) { return source.find("msg_file") != std::string::npos; }

// A qpsmtpd plugin reads its config files (Qp:config) from
// $QPSMTPD_CONFIG or the directory `config` next to it: granted for
// reading, when they exist.
void grant_qpsmtpd_config(Generation& g, const std::string& script) {
  const std::filesystem::path parent = std::filesystem::path(script).parent_path();
  grant_read_dir(g, ((parent.empty() ? std::filesystem::path(".") : parent) / "config").string());
  if (const char* dir = std::getenv("QPSMTPD_CONFIG")) grant_read_dir(g, dir);
}

// A script's environment: its own `hook` table, so chained scripts each
// define hook.rcpt without clobbering another's; every other read falls
// back to the shared globals.
void push_script_env(lua_State* L) {
  lua_newtable(L);                     // env
  lua_newtable(L);
  lua_setfield(L, -2, "hook");         // env.hook = {}
  lua_newtable(L);                     // metatable
  lua_pushglobaltable(L);
  lua_setfield(L, -2, "__index");      // reads fall back to _G
  lua_setmetatable(L, -2);
}

int traceback(lua_State* L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

// Loads one script into a new environment; leaves nothing on the stack.
bool load_script(Generation& g, const std::string& path, const std::string& dialect, bool shadow,
                 std::string& error) {
  lua_State* L = g.L;
  const int base = lua_gettop(L);
  push_script_env(L);
  const int env = lua_gettop(L);
  if (!prepare_env(L, env, error)) {
    lua_settop(L, base);
    return false;
  }
  lua_pushcfunction(L, traceback);
  int rc = luaL_loadfilex(L, path.c_str(), "t");
  if (rc == LUA_OK) {
    lua_pushvalue(L, env);
    lua_setupvalue(L, -2, 1);  // the chunk's _ENV
    SessionContext* none = nullptr;
    g.current = none;
    rc = lua_pcall(L, 0, 0, env + 1);
  }
  if (rc != LUA_OK) {
    const char* msg = lua_tostring(L, -1);
    error = (rc == LUA_ERRMEM ? "out of --lua-memory loading " + path + ": " : std::string()) +
            (msg ? msg : "unknown error loading " + path);
    lua_settop(L, base);
    return false;
  }
  const std::string source = read_source(path);
  const std::string found = adapt_script(L, env, dialect, path, source, error);
  if (found.empty()) {
    lua_settop(L, base);
    return false;
  }
  if (found == "qpsmtpd") grant_qpsmtpd_config(g, path);
  g.script_dialects.push_back(found);
  g.script_shadow.push_back(shadow);
  lua_pushvalue(L, env);
  g.env_refs.push_back(luaL_ref(L, LUA_REGISTRYINDEX));
  g.script_names.push_back(path);
  g.script_reads_msg_file.push_back(mentions_msg_file(source));
  lua_settop(L, base);
  return true;
}

void compute_capabilities(Generation& g) {
  lua_State* L = g.L;
  for (std::size_t i = 0; i < g.env_refs.size(); ++i) {
    // Raw reads: no metamethod of a script runs outside a protected call.
    lua_rawgeti(L, LUA_REGISTRYINDEX, g.env_refs[i]);
    lua_pushliteral(L, "hook");
    lua_rawget(L, -2);
    if (lua_istable(L, -1)) {
      lua_pushliteral(L, "accept");
      if (lua_rawget(L, -2) == LUA_TFUNCTION) g.capabilities.connect_hook = true;
      lua_pop(L, 1);
    }
    for (const auto& h : kHookEvents) {
      if (lua_istable(L, -1) && (lua_pushstring(L, h.hook), lua_rawget(L, -2)) == LUA_TFUNCTION) {
        g.capabilities.events.add(h.kind);
        const bool message = h.needs == Needs::Message || (h.needs == Needs::MessageIfAsked && takes_arguments(L));
        g.capabilities.wants_message = g.capabilities.wants_message || message;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
    // A script that names client.msg_file reads the message file.
    if (g.script_reads_msg_file[i]) g.capabilities.wants_message = true;
  }
  // The bytes travel as MESSAGE_CHUNK events, also for a hook.dot(path)
  // alone; transactions must end in policyd too, to drop the temp file.
  // END_OF_MESSAGE is asked for as well: a content hook stopped by
  // --hook-timeout (or failing under --hook-error tempfail) answers the
  // message 451 4.3.0 there.
  if (g.capabilities.wants_message) {
    g.capabilities.events.add(EventKind::MessageChunk);
    g.capabilities.events.add(EventKind::Reset);
    g.capabilities.events.add(EventKind::EndOfMessage);
  }
  std::string names;
  for (std::size_t i = 0; i < g.script_names.size(); ++i) {
    names += (names.empty() ? "" : ",") + g.script_names[i];
    if (g.script_dialects[i] != "smtpe") names += " (" + g.script_dialects[i] + ")";
    if (g.script_shadow[i]) names += " (shadow)";
  }
  g.capabilities.policy_name = names;
  g.capabilities.honours_speculative = true;  // run_session skips after a broken prediction
}

// --lua-read-dir / --lua-write-dir, canonical; a missing one is an error.
bool grant_dirs(const RuntimeConfig& config, Generation& g, std::string& error) {
  for (const auto* dirs : {&config.lua_read_dirs, &config.lua_write_dirs}) {
    for (const auto& d : *dirs) {
      std::optional<std::string> c = canonical_dir(d.string());
      if (!c) {
        error = (dirs == &config.lua_read_dirs ? "--lua-read-dir " : "--lua-write-dir ") + d.string() +
                ": not a directory";
        return false;
      }
      (dirs == &config.lua_read_dirs ? g.read_dirs : g.write_dirs).push_back(std::move(*c));
    }
  }
  return true;
}

}  // namespace

std::shared_ptr<Generation> load_generation(const RuntimeConfig& config, std::string& error) {
  if (config.modules.empty()) {
    error = "bug: no Lua modules given to the runtime (RuntimeConfig::modules: lua_api/modules.h's lua_modules())";
    return nullptr;
  }
  auto g = std::make_shared<Generation>();
  g->allocator.cap = config.lua_memory_bytes;
  g->hook_timeout = config.hook_timeout;
  g->hook_error_tempfail = config.hook_error_tempfail;
  g->load_timeout = config.load_timeout;
  g->spf_max_dns_lookups = config.spf_max_dns_lookups;
  g->spf_max_void_lookups = config.spf_max_void_lookups;
  g->spf_timeout = config.spf_timeout;
  g->dkim_max_signatures = config.dkim_max_signatures;
  g->clock = config.clock;
  g->spool_dir = config.spool_dir;
  if (!grant_dirs(config, *g, error)) return nullptr;
  g->lua_path = config.lua_path;
  g->lua_env = config.lua_env;
  g->map_store = config.map_store ? config.map_store : std::make_shared<map::MapStore>();
  g->L = lua_newstate(&CappedAllocator::alloc, &g->allocator);
  if (g->L == nullptr) {
    error = "cannot create a Lua state within --lua-memory";
    return nullptr;
  }
  *static_cast<Generation**>(lua_getextraspace(g->L)) = g.get();
  luaL_openlibs(g->L);
  apply_sandbox(g->L);
  for (const LuaModule& module : config.modules) module.open(g->L);
  // From here Lua code runs: all of it, and every coroutine it makes,
  // under --load-timeout.
  arm_load_deadline(*g);
  if (!load_dialects(g->L, error)) return nullptr;
  // Shadow scripts first: they see every event, whatever the others reply.
  for (const auto& script : config.shadow_scripts) {
    if (!load_script(*g, script.string(), config.dialect, true, error)) return nullptr;
  }
  for (const auto& script : config.scripts) {
    if (!load_script(*g, script.string(), config.dialect, config.shadow, error)) return nullptr;
  }
  disarm_load_deadline(*g);
  compute_capabilities(*g);
  lua_gc(g->L, LUA_GCCOLLECT);
  return g;
}

}  // namespace mailhook::policyd
