// The Lua modules of the smtpe API, one file each; each open_<module>(L)
// installs its global into the master state. They read the session that
// is running through current_session(L) and never keep lua_State* beyond
// a call. lua_modules() is the one list of them, in the order they open;
// the daemon gives it to the runtime (RuntimeConfig::modules), which
// names none of them.
#pragma once

#include <lua.hpp>

#include "policyd/lua_runtime/lua_module.h"

namespace mailhook::policyd {

// Every module below, in the order a generation opens them (modules.cc).
LuaModules lua_modules();

void open_patterns(lua_State* L); // string.find/match/gmatch/gsub that --hook-timeout stops (pattern_deadline.cc)
void open_client(lua_State* L);   // client.*  (client.cc)
void open_smtpe(lua_State* L);    // smtpe.*   (smtpe.cc)
void open_net(lua_State* L);      // net.*     (net.cc)
void open_syslog(lua_State* L);   // syslog.*  (syslog.cc)
void open_message(lua_State* L);  // message.* (message.cc)
void open_dns(lua_State* L);      // dns.*     (dns.cc)
void open_kv(lua_State* L);       // kv.*      (kv.cc): Redis, shared by replicas
void open_mime(lua_State* L);     // mime.parse (mime.cc)
void open_dmarc(lua_State* L);    // dmarc.check (dmarc.cc): RFC 7489 policy, yields for DNS
void open_notes(lua_State* L);    // session, transaction (notes.cc): per-session / per-transaction tables
void open_map(lua_State* L);      // map.file (map.cc): Postfix-like access maps, shared and reloaded
void open_spf(lua_State* L);      // spf.check (spf.cc): RFC 7208 on the resolver
void open_control(lua_State* L);  // mailhook.* (control.cc): disconnect, limits, EHLO keywords
void open_dkim(lua_State* L);     // dkim.verify, dkim.sign (dkim.cc)

}  // namespace mailhook::policyd
