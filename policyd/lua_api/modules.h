// The Lua modules of the smtpe API, one file each; each open_<module>(L)
// installs its global into the master state. They read the session that
// is running through current_session(L) and never keep lua_State* beyond
// a call.
#pragma once

#include <lua.hpp>

namespace mailhook::policyd {

void open_client(lua_State* L);   // client.*  (client.cc)
void open_smtpe(lua_State* L);    // smtpe.*   (smtpe.cc)
void open_net(lua_State* L);      // net.*     (net.cc)
void open_syslog(lua_State* L);   // syslog.*  (syslog.cc)
void open_message(lua_State* L);  // message.* (message.cc)
void open_dns(lua_State* L);      // dns.*     (dns.cc)
void open_kv(lua_State* L);       // kv.*      (kv.cc): Redis, shared by replicas
void open_mime(lua_State* L);     // mime.parse (mime.cc)
void open_control(lua_State* L);
void open_dkim(lua_State* L);     // dkim.verify, dkim.sign (dkim.cc)  // mailhook.* (control.cc): disconnect, limits, EHLO keywords

// hook.cc: pushes a new script environment {hook = {}} whose reads fall
// back to the shared globals.
void push_script_env(lua_State* L);

}  // namespace mailhook::policyd
