// `syslog`: smtpe's open/log/error/info/debug/close and smtpf's
// openlog/syslog/closelog, with the seed's constants (values of
// <syslog.h>). Lines go through policyd's log sink (syslog or stderr with
// --log-stderr), tagged with the session id and the script's file:line;
// open/close only take note, since policyd owns the log.
#include <syslog.h>

#include <string>

#include "mailcore/telemetry/log.h"
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {
namespace {

// The message is escaped (log::escape_text): scripts log client data ("failed
// login for " .. user), and a line break in it must not start a forged
// log line. Called after every Lua check: no Lua error from here on.
void emit(lua_State* L, int level, std::string_view message) {
  luaL_where(L, 1);
  const char* where = lua_tostring(L, -1);
  const SessionContext* s = current_session(L);
  const std::string id = s ? log::escape_text(s->start.session_id) : std::string("-");
  const int clamped = level < LOG_ERR ? LOG_ERR : (level > LOG_DEBUG ? LOG_DEBUG : level);
  log::write(static_cast<log::Level>(clamped),
             fmt::format("lua session={} {}{}", id, log::escape_text(where), log::escape_text(message)));
}

int sys_log(lua_State* L) {
  const int level = static_cast<int>(luaL_checkinteger(L, 1));
  std::size_t len = 0;
  const char* message = luaL_checklstring(L, 2, &len);
  emit(L, level, {message, len});
  return 0;
}

template <int Level>
int sys_level(lua_State* L) {
  std::size_t len = 0;
  const char* message = luaL_checklstring(L, 1, &len);
  emit(L, Level, {message, len});
  return 0;
}

int sys_open(lua_State* L) {
  luaL_optstring(L, 1, "");
  return 0;
}

int sys_close(lua_State*) { return 0; }

struct Constant {
  const char* name;
  int value;
};

constexpr Constant kConstants[] = {
    {"LOG_PID", LOG_PID}, {"LOG_CONS", LOG_CONS}, {"LOG_ODELAY", LOG_ODELAY}, {"LOG_NDELAY", LOG_NDELAY},
    {"LOG_NOWAIT", LOG_NOWAIT}, {"LOG_PERROR", LOG_PERROR},
    {"LOG_KERN", LOG_KERN}, {"LOG_USER", LOG_USER}, {"LOG_MAIL", LOG_MAIL}, {"LOG_DAEMON", LOG_DAEMON},
    {"LOG_AUTH", LOG_AUTH}, {"LOG_SYSLOG", LOG_SYSLOG}, {"LOG_LPR", LOG_LPR}, {"LOG_NEWS", LOG_NEWS},
    {"LOG_UUCP", LOG_UUCP}, {"LOG_CRON", LOG_CRON}, {"LOG_AUTHPRIV", LOG_AUTHPRIV}, {"LOG_FTP", LOG_FTP},
    {"LOG_LOCAL0", LOG_LOCAL0}, {"LOG_LOCAL1", LOG_LOCAL1}, {"LOG_LOCAL2", LOG_LOCAL2},
    {"LOG_LOCAL3", LOG_LOCAL3}, {"LOG_LOCAL4", LOG_LOCAL4}, {"LOG_LOCAL5", LOG_LOCAL5},
    {"LOG_LOCAL6", LOG_LOCAL6}, {"LOG_LOCAL7", LOG_LOCAL7},
    {"LOG_EMERG", LOG_EMERG}, {"LOG_ALERT", LOG_ALERT}, {"LOG_CRIT", LOG_CRIT}, {"LOG_ERR", LOG_ERR},
    {"LOG_WARNING", LOG_WARNING}, {"LOG_NOTICE", LOG_NOTICE}, {"LOG_INFO", LOG_INFO},
    {"LOG_DEBUG", LOG_DEBUG},
};

constexpr luaL_Reg kFunctions[] = {
    {"open", sys_open}, {"openlog", sys_open},           // smtpe, smtpf
    {"log", sys_log}, {"syslog", sys_log},                // smtpe, smtpf
    {"error", sys_level<LOG_ERR>}, {"info", sys_level<LOG_INFO>}, {"debug", sys_level<LOG_DEBUG>},
    {"close", sys_close}, {"closelog", sys_close},        // smtpe, smtpf
    {nullptr, nullptr},
};

}  // namespace

void open_syslog(lua_State* L) {
  luaL_newlib(L, kFunctions);
  for (const auto& c : kConstants) {
    lua_pushinteger(L, c.value);
    lua_setfield(L, -2, c.name);
  }
  lua_setglobal(L, "syslog");
}

}  // namespace mailhook::policyd
