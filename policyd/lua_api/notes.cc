// `session` and `transaction`: a script's own per-session and
// per-transaction tables (Haraka's connection.notes / transaction.notes).
// Each global is a proxy whose metamethods reach the running session's
// table in the registry, so one worker's sessions never see each other's
// notes. The runtime drops `transaction` when client.id_trans changes
// (RSET, HELO/EHLO, end of message) and both when the session ends
// (session_events.cc, with drop_*_notes of lua_runtime/context.h, which
// owns the refs); scripts never clean up. Never keeps lua_State*.
#include <string_view>

#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {
namespace {

// The proxy's upvalue 1: true for `transaction`, false for `session`.
bool is_transaction(lua_State* L) { return lua_toboolean(L, lua_upvalueindex(1)); }

const char* name_of(lua_State* L) { return is_transaction(L) ? "transaction" : "session"; }

// Pushes the running session's table (creating it when `create`); pushes
// nothing and returns false outside a hook, or for `transaction` outside a
// transaction.
bool push_notes(lua_State* L, bool create) {
  SessionContext* s = current_session(L);
  if (s == nullptr) return false;
  const bool tx = is_transaction(L);
  if (tx && s->transaction_id.empty()) return false;
  int& ref = tx ? s->transaction_notes : s->session_notes;
  if (ref == LUA_NOREF) {
    if (!create) return false;
    lua_newtable(L);
    lua_pushvalue(L, -1);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return true;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  return true;
}

int notes_index(lua_State* L) {
  if (!push_notes(L, false)) return lua_pushnil(L), 1;
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

int notes_newindex(lua_State* L) {
  if (!push_notes(L, true)) {
    return luaL_error(L, is_transaction(L) ? "transaction is only available inside a transaction (hook.mail to hook.forward)"
                                           : "session is only available inside a hook");
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

// pairs(session): the session's own table (an empty one when it has none yet).
int notes_pairs(lua_State* L) {
  lua_getglobal(L, "next");
  if (!push_notes(L, false)) lua_newtable(L);
  lua_pushnil(L);
  return 3;
}

int notes_len(lua_State* L) {
  if (!push_notes(L, false)) return lua_pushinteger(L, 0), 1;
  lua_pushinteger(L, static_cast<lua_Integer>(lua_rawlen(L, -1)));
  return 1;
}

void open_proxy(lua_State* L, const char* global, bool transaction) {
  lua_newtable(L);
  lua_newtable(L);
  const luaL_Reg fns[] = {{"__index", notes_index}, {"__newindex", notes_newindex}, {"__pairs", notes_pairs},
                          {"__len", notes_len}, {nullptr, nullptr}};
  lua_pushboolean(L, transaction);
  luaL_setfuncs(L, fns, 1);
  lua_pushstring(L, global);
  lua_setfield(L, -2, "__metatable");  // getmetatable(session) cannot swap it
  lua_setmetatable(L, -2);
  lua_setglobal(L, global);
}

}  // namespace

void open_notes(lua_State* L) {
  open_proxy(L, "session", false);
  open_proxy(L, "transaction", true);
}

}  // namespace mailhook::policyd
