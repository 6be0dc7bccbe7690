// Script loading: one environment per script, capabilities from the hook
// tables the scripts filled in.
#include "policyd/lua_runtime/loader.h"

#include "policyd/dialects/dialects.h"

#include "policyd/lua_api/modules.h"

namespace mailhook::policyd {
namespace {

struct HookEvent {
  const char* hook;
  EventKind kind;
  bool message;  // needs the message bytes
};

// smtpe hook -> the event the front must send for it.
constexpr HookEvent kHookEvents[] = {
    {"helo", EventKind::Helo, false}, {"ehlo", EventKind::Ehlo, false}, {"auth", EventKind::Auth, false},
    {"mail", EventKind::Mail, false}, {"rcpt", EventKind::Rcpt, false}, {"data", EventKind::Data, false},
    {"content", EventKind::MessageChunk, true}, {"header", EventKind::MessageChunk, true},
    {"eoh", EventKind::MessageChunk, true}, {"body", EventKind::MessageChunk, true},
    {"dot", EventKind::EndOfMessage, true}, {"forward", EventKind::EndOfMessage, true},
    {"rset", EventKind::Rset, false}, {"noop", EventKind::Noop, false}, {"help", EventKind::Help, false},
    {"quit", EventKind::Quit, false}, {"unknown", EventKind::Unknown, false},
    {"xclient", EventKind::Xclient, false}, {"reset", EventKind::Reset, false},
    {"error", EventKind::Error, false}, {"close", EventKind::Close, false},
    {"vrfy", EventKind::Vrfy, false}, {"expn", EventKind::Expn, false},
};

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
  const std::string found = adapt_script(L, env, dialect, path, error);
  if (found.empty()) {
    lua_settop(L, base);
    return false;
  }
  g.script_dialects.push_back(found);
  g.script_shadow.push_back(shadow);
  lua_pushvalue(L, env);
  g.env_refs.push_back(luaL_ref(L, LUA_REGISTRYINDEX));
  g.script_names.push_back(path);
  lua_settop(L, base);
  return true;
}

void compute_capabilities(Generation& g) {
  lua_State* L = g.L;
  for (int ref : g.env_refs) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_getfield(L, -1, "hook");
    if (lua_istable(L, -1)) {
      if (lua_getfield(L, -1, "accept") == LUA_TFUNCTION) g.capabilities.connect_hook = true;
      lua_pop(L, 1);
    }
    for (const auto& h : kHookEvents) {
      if (lua_istable(L, -1) && lua_getfield(L, -1, h.hook) == LUA_TFUNCTION) {
        g.capabilities.events.add(h.kind);
        g.capabilities.wants_message = g.capabilities.wants_message || h.message;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
  }
  // Transactions must end in policyd too, to drop the message temp file.
  if (g.capabilities.wants_message) g.capabilities.events.add(EventKind::Reset);
  std::string names;
  for (std::size_t i = 0; i < g.script_names.size(); ++i) {
    names += (names.empty() ? "" : ",") + g.script_names[i];
    if (g.script_dialects[i] != "smtpe") names += " (" + g.script_dialects[i] + ")";
    if (g.script_shadow[i]) names += " (shadow)";
  }
  g.capabilities.policy_name = names;
}

}  // namespace

std::shared_ptr<Generation> load_generation(const RuntimeConfig& config, std::string& error) {
  auto g = std::make_shared<Generation>();
  g->allocator.cap = config.lua_memory_bytes;
  g->hook_timeout = config.hook_timeout;
  g->spool_dir = config.spool_dir;
  g->L = lua_newstate(&CappedAllocator::alloc, &g->allocator);
  if (g->L == nullptr) {
    error = "cannot create a Lua state within --lua-memory";
    return nullptr;
  }
  *static_cast<Generation**>(lua_getextraspace(g->L)) = g.get();
  luaL_openlibs(g->L);
  apply_sandbox(g->L);
  open_client(g->L);
  open_smtpe(g->L);
  open_net(g->L);
  open_syslog(g->L);
  open_message(g->L);
  open_dns(g->L);
  open_control(g->L);
  open_mime(g->L);
  open_kv(g->L);
  if (!load_dialects(g->L, error)) return nullptr;
  // Shadow scripts first: they see every event, whatever the others reply.
  for (const auto& script : config.shadow_scripts) {
    if (!load_script(*g, script.string(), config.dialect, true, error)) return nullptr;
  }
  for (const auto& script : config.scripts) {
    if (!load_script(*g, script.string(), config.dialect, config.shadow, error)) return nullptr;
  }
  compute_capabilities(*g);
  lua_gc(g->L, LUA_GCCOLLECT);
  return g;
}

}  // namespace mailhook::policyd
