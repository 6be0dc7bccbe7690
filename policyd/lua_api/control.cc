// `mailhook`: what a hook asks of the session beyond its reply (mailhook
// extensions, used by the VPOP3 and qpsmtpd dialects and open to any
// script). Each call is recorded on the session and travels with the
// decision on the current event (or the next one that has a reply):
//   mailhook.disconnect()          close after the reply (qpsmtpd *_DISCONNECT,
//                                  VPOP3 ForceDisconnect)
//   mailhook.limits{max_message_size=, max_recipients=, max_line_length=}
//                                  new limits for the rest of the session;
//                                  fields left out keep their value, 0 lifts
//                                  the limit (VPOP3 GetMaxMessageSize, Max*);
//                                  mailhook.limits() returns those in effect
//   mailhook.ehlo_keywords{...}    hook.ehlo only: the EHLO keywords to
//                                  advertise instead of the front's
//                                  (VPOP3 GetEHLOCapabilities)
// Behind a milter none of them reaches the client (the MTA owns the
// connection, its limits and its EHLO); policyd logs that once per call.
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"

#include "mailcore/telemetry/log.h"

namespace mailhook::policyd {
namespace {

SessionContext& require_session(lua_State* L, const char* fn) {
  SessionContext* s = current_session(L);
  if (s == nullptr) luaL_error(L, "mailhook.%s is only available inside a hook", fn);
  return *s;
}

void milter_note(const SessionContext& s, const char* fn) {
  if (s.start.shape == Shape::Milter) {
    log::info("session={} mailhook.{} has no effect behind a milter (the MTA owns the session)",
              log::escape_text(s.start.session_id), fn);
  }
}

int disconnect(lua_State* L) {
  SessionContext& s = require_session(L, "disconnect");
  milter_note(s, "disconnect");
  s.pending.disconnect = true;
  return 0;
}

// Reads t[field] as a non-negative integer into `out` when present.
template <typename T>
void read_limit(lua_State* L, const char* field, T& out) {
  const int type = lua_getfield(L, 1, field);
  if (type != LUA_TNIL) {
    int ok = 0;
    const lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 0 || static_cast<std::uint64_t>(v) > std::numeric_limits<T>::max()) {
      luaL_error(L, "mailhook.limits: %s must be an integer from 0 (no limit) up", field);
    }
    out = static_cast<T>(v);
  }
  lua_pop(L, 1);
}

int limits(lua_State* L) {
  SessionContext& s = require_session(L, "limits");
  if (lua_isnoneornil(L, 1)) {  // mailhook.limits(): the limits in effect
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, static_cast<lua_Integer>(s.start.limits.max_message_size));
    lua_setfield(L, -2, "max_message_size");
    lua_pushinteger(L, s.start.limits.max_recipients);
    lua_setfield(L, -2, "max_recipients");
    lua_pushinteger(L, s.start.limits.max_line_length);
    lua_setfield(L, -2, "max_line_length");
    return 1;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  SessionLimits l = s.pending.limits.value_or(s.start.limits);
  read_limit(L, "max_message_size", l.max_message_size);
  read_limit(L, "max_recipients", l.max_recipients);
  read_limit(L, "max_line_length", l.max_line_length);
  milter_note(s, "limits");
  s.pending.limits = l;
  s.start.limits = l;  // what later calls build on
  return 0;
}

int ehlo_keywords(lua_State* L) {
  SessionContext& s = require_session(L, "ehlo_keywords");
  if (s.phase != HookPhase::Ehlo) return luaL_error(L, "mailhook.ehlo_keywords is only available in hook.ehlo");
  luaL_checktype(L, 1, LUA_TTABLE);
  std::vector<std::string> keywords;
  const lua_Integer n = luaL_len(L, 1);
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_geti(L, 1, i);
    std::size_t len = 0;
    const char* k = lua_tolstring(L, -1, &len);
    if (k == nullptr || len == 0 || len > 500) luaL_error(L, "mailhook.ehlo_keywords: entry %d is not a keyword line", int(i));
    for (std::size_t j = 0; j < len; ++j) {
      const unsigned char c = static_cast<unsigned char>(k[j]);
      if (c < 0x20 || c == 0x7f) luaL_error(L, "mailhook.ehlo_keywords: entry %d has a control character", int(i));
    }
    keywords.emplace_back(k, len);
    lua_pop(L, 1);
  }
  milter_note(s, "ehlo_keywords");
  s.pending.ehlo_keywords = std::move(keywords);
  return 0;
}

constexpr luaL_Reg kFunctions[] = {
    {"disconnect", disconnect}, {"limits", limits}, {"ehlo_keywords", ehlo_keywords}, {nullptr, nullptr}};

}  // namespace

void open_control(lua_State* L) {
  luaL_newlib(L, kFunctions);
  lua_setglobal(L, "mailhook");
}

}  // namespace mailhook::policyd
