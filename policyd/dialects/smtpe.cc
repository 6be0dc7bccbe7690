// Event -> hook mapping of the smtpe dialect (seed 000): each event kind's
// hook.* and its arguments. The session machinery around it (transaction,
// temp file, line splitting, decisions) is lua_runtime/session_events.cc.
#include "policyd/dialects/smtpe.h"

namespace mailhook::policyd {

std::string_view hook_name(HookPhase phase) {
  switch (phase) {
    case HookPhase::Load: return "load";
    case HookPhase::Accept: return "accept";
    case HookPhase::Helo: return "helo";
    case HookPhase::Ehlo: return "ehlo";
    case HookPhase::Auth: return "auth";
    case HookPhase::Mail: return "mail";
    case HookPhase::Rcpt: return "rcpt";
    case HookPhase::Data: return "data";
    case HookPhase::Content: return "content";
    case HookPhase::Header: return "header";
    case HookPhase::Eoh: return "eoh";
    case HookPhase::Body: return "body";
    case HookPhase::Dot: return "dot";
    case HookPhase::Forward: return "forward";
    case HookPhase::Reset: return "reset";
    case HookPhase::Rset: return "rset";
    case HookPhase::Noop: return "noop";
    case HookPhase::Help: return "help";
    case HookPhase::Quit: return "quit";
    case HookPhase::Unknown: return "unknown";
    case HookPhase::Xclient: return "xclient";
    case HookPhase::Error: return "error";
    case HookPhase::Close: return "close";
    case HookPhase::Vrfy: return "vrfy";
    case HookPhase::Expn: return "expn";
  }
  return "?";
}

}  // namespace mailhook::policyd

namespace mailhook::policyd::dialects {
namespace {

int push_string(lua_State* T, std::string_view v) {
  lua_pushlstring(T, v.data(), v.size());
  return 1;
}

}  // namespace

std::string_view event_parameter(const SessionEvent& e, std::string_view name) {
  for (const auto& p : e.parameters) {
    if (p.name == name) return p.value;
  }
  return {};
}

int push_accept_args(lua_State* T, const ClientFacts& c) {
  push_string(T, c.address);
  push_string(T, c.host);
  return 2;
}

std::optional<HookPhase> smtpe_hook(const SessionEvent& e, PushArgs& args) {
  auto arg = [&](const std::string& v) { args = [&v](lua_State* T) { return push_string(T, v); }; };
  switch (e.kind) {
    case EventKind::Helo: arg(e.argument); return HookPhase::Helo;
    case EventKind::Ehlo: arg(e.argument); return HookPhase::Ehlo;
    case EventKind::Auth:
      // hook.auth(auth_arg, user, password): the seed's argument, plus the
      // decoded credentials the front collected (RFC 4954 exchange).
      args = [&e](lua_State* T) {
        push_string(T, e.argument);
        push_string(T, event_parameter(e, "user"));
        push_string(T, event_parameter(e, "password"));
        return 3;
      };
      return HookPhase::Auth;
    case EventKind::Mail: arg(e.address); return HookPhase::Mail;  // ESMTP parameters: client.params
    case EventKind::Rcpt: arg(e.address); return HookPhase::Rcpt;
    case EventKind::Data: return HookPhase::Data;
    case EventKind::Rset: return HookPhase::Rset;
    case EventKind::Noop: return HookPhase::Noop;
    case EventKind::Help: return HookPhase::Help;
    case EventKind::Quit: return HookPhase::Quit;
    case EventKind::Unknown: arg(e.input); return HookPhase::Unknown;
    case EventKind::Xclient: return HookPhase::Xclient;  // sees the new facts already
    case EventKind::Reset: return HookPhase::Reset;
    case EventKind::Close: return HookPhase::Close;
    case EventKind::Error:
      args = [&e](lua_State* T) {
        lua_pushinteger(T, e.error_code);
        push_string(T, e.error_text);
        return 2;
      };
      return HookPhase::Error;
    case EventKind::Vrfy:
    case EventKind::Expn:
      // mailhook: hook.vrfy(arg, default_reply) and hook.expn(arg,
      // default_reply); the default as it would go on the wire.
      args = [&e](lua_State* T) {
        push_string(T, e.argument);
        push_string(T, e.default_reply ? e.default_reply->wire() : std::string());
        return 2;
      };
      return e.kind == EventKind::Vrfy ? HookPhase::Vrfy : HookPhase::Expn;
    case EventKind::Starttls:
    case EventKind::MessageChunk:
    case EventKind::EndOfMessage:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace mailhook::policyd::dialects
