// `client`: the calling session's facts. A proxy table whose __index reads
// the running session, so it is right in every coroutine. The availability
// rules of the smtpe seed live in one table (kAvailability); outside its
// window a variable reads as nil.
#include <initializer_list>
#include <string_view>

#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/client_host.h"
#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {
namespace {

using P = HookPhase;

struct Availability {
  std::string_view name;
  std::initializer_list<HookPhase> phases;  // empty: every hook
};

// smtpe: address, port, host, id_log "from hook.accept to hook.close";
// id_trans, msg_file "from hook.mail to hook.forward; cleared by RSET,
// HELO, EHLO"; input "in each SMTP command related hook".
constexpr std::initializer_list<HookPhase> kTransaction{P::Mail, P::Rcpt, P::Data, P::Content, P::Header,
                                                        P::Eoh, P::Body, P::Dot, P::Forward};
constexpr std::initializer_list<HookPhase> kCommand{P::Helo, P::Ehlo, P::Auth, P::Mail, P::Rcpt, P::Vrfy, P::Expn, P::Help,
                                                    P::Data, P::Rset, P::Unknown, P::Error};
// Every hook that answers a command (mailhook: client.default_reply).
constexpr std::initializer_list<HookPhase> kReplying{P::Helo, P::Ehlo, P::Auth, P::Mail, P::Rcpt, P::Vrfy,
                                                     P::Expn, P::Data, P::Rset, P::Noop, P::Help, P::Quit,
                                                     P::Unknown};
const Availability kAvailability[] = {
    {"address", {}}, {"port", {}}, {"host", {}}, {"id_log", {}}, {"is_pipelining", {}},
    {"tls_protocol", {}}, {"tls_cipher", {}},  // mailhook: nil until STARTTLS completed
    {"auth_user", {}},                         // mailhook: nil until AUTH succeeded
    {"macros", {}},                            // mailhook: the MTA's milter macros (front: empty)
    {"helo", {}},                              // mailhook: the HELO/EHLO name, nil before one
    {"sender", kTransaction},                  // mailhook: MAIL FROM address of the transaction
    {"trace", {}},                             // mailhook: this session is traced (settable)
    {"local_address", {}}, {"local_port", {}},  // mailhook: the address the client connected to
    {"default_reply", kReplying},               // mailhook: the reply the front (or MTA) would send
    {"queue_id", kTransaction},                // mailhook: the MTA's queue id ({i}) or id_trans
    {"recipients", kTransaction},              // mailhook: accepted RCPT TO addresses, in order
    {"id_trans", kTransaction}, {"msg_file", kTransaction}, {"input", kCommand},
    {"params", {P::Mail, P::Rcpt}},            // mailhook: the command's ESMTP parameters, parsed
};

bool available(std::string_view name, HookPhase phase, bool& known) {
  for (const auto& a : kAvailability) {
    if (a.name != name) continue;
    known = true;
    if (a.phases.size() == 0) return true;
    for (HookPhase p : a.phases) {
      if (p == phase) return true;
    }
    return false;
  }
  known = false;
  return false;
}

// client.params: the MAIL/RCPT line's ESMTP parameters as the front (or
// the milter's MTA) parsed them (RFC 5321 4.1.2; mailcore/smtp/command.cc,
// the one parser): keyword -> value ({SIZE = "1000", SMTPUTF8 = true}:
// keywords upper case, a keyword without a value is true), and the
// keywords in the order sent as its array part (params[1] == "SIZE"). A
// fresh table per read: a script may keep or change it. Built only when
// read, so MAIL and RCPT cost nothing more.
int push_params(lua_State* L, const SessionContext& s) {
  if (s.event == nullptr) return lua_pushnil(L), 1;
  const auto& params = s.event->parameters;
  const int n = static_cast<int>(params.size());
  lua_createtable(L, n, n);
  for (int i = 0; i < n; ++i) {
    const Parameter& p = params[static_cast<std::size_t>(i)];
    lua_pushlstring(L, p.name.data(), p.name.size());
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, i + 1);
    if (p.value.empty()) {
      lua_pushboolean(L, 1);
    } else {
      lua_pushlstring(L, p.value.data(), p.value.size());
    }
    lua_rawset(L, -3);
  }
  return 1;
}

int client_index(lua_State* L) {
  const std::string_view key = luaL_checkstring(L, 2);
  SessionContext* s = current_session(L);
  bool known = false;
  if (s == nullptr || !available(key, s->phase, known)) {
    lua_pushnil(L);
    return 1;
  }
  const ClientFacts& c = s->start.client;
  if (key == "address") {
    lua_pushlstring(L, c.address.data(), c.address.size());
  } else if (key == "port") {
    lua_pushinteger(L, c.port);
  } else if (key == "local_address") {
    if (c.local_address.empty()) return lua_pushnil(L), 1;
    lua_pushlstring(L, c.local_address.data(), c.local_address.size());
  } else if (key == "local_port") {
    if (c.local_port == 0) return lua_pushnil(L), 1;
    lua_pushinteger(L, c.local_port);
  } else if (key == "host") {
    return push_client_host(L, *s);  // may wait for the PTR lookup
  } else if (key == "id_log") {
    lua_pushlstring(L, s->start.session_id.data(), s->start.session_id.size());
  } else if (key == "is_pipelining") {
    lua_pushboolean(L, s->start.early_talker);
  } else if (key == "tls_protocol" || key == "tls_cipher" || key == "auth_user") {
    const std::string& v = key == "tls_protocol" ? c.tls_protocol : key == "tls_cipher" ? c.tls_cipher : c.auth_user;
    if (v.empty()) return lua_pushnil(L), 1;
    lua_pushlstring(L, v.data(), v.size());
  } else if (key == "id_trans") {
    if (s->transaction_id.empty()) return lua_pushnil(L), 1;
    lua_pushlstring(L, s->transaction_id.data(), s->transaction_id.size());
  } else if (key == "msg_file") {
    // nil also when no script takes the message (see compute_capabilities).
    if (s->transaction_id.empty() || !s->generation->capabilities.wants_message) return lua_pushnil(L), 1;
    lua_pushstring(L, s->msg_file.c_str());
  } else if (key == "helo" || key == "sender") {
    const std::string& v = key == "helo" ? s->helo : s->sender;
    if (v.empty() && !(key == "sender" && !s->transaction_id.empty())) return lua_pushnil(L), 1;
    lua_pushlstring(L, v.data(), v.size());
  } else if (key == "macros") {
    lua_createtable(L, 0, static_cast<int>(c.attributes.size()));
    for (const auto& [name, value] : c.attributes) {
      lua_pushlstring(L, value.data(), value.size());
      lua_setfield(L, -2, name.c_str());
    }
  } else if (key == "queue_id") {
    auto it = c.attributes.find("i");
    const std::string& v = it != c.attributes.end() && !it->second.empty() ? it->second : s->transaction_id;
    if (v.empty()) return lua_pushnil(L), 1;
    lua_pushlstring(L, v.data(), v.size());
  } else if (key == "default_reply") {
    if (s->event == nullptr || !s->event->default_reply) return lua_pushnil(L), 1;
    const std::string wire = s->event->default_reply->wire();
    lua_pushlstring(L, wire.data(), wire.size());
  } else if (key == "recipients") {
    lua_createtable(L, static_cast<int>(s->recipients.size()), 0);
    for (std::size_t i = 0; i < s->recipients.size(); ++i) {
      lua_pushlstring(L, s->recipients[i].data(), s->recipients[i].size());
      lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
    }
  } else if (key == "trace") {
    lua_pushboolean(L, s->trace);
  } else if (key == "params") {
    return push_params(L, *s);
  } else if (key == "input") {
    if (s->event == nullptr) return lua_pushnil(L), 1;
    lua_pushlstring(L, s->event->input.data(), s->event->input.size());
  } else {
    lua_pushnil(L);
  }
  return 1;
}

// Every variable is read-only but `client.trace` (mailhook): a script that
// sets it to true gets this session traced from then on, like --trace.
int client_newindex(lua_State* L) {
  const std::string_view key = luaL_checkstring(L, 2);
  SessionContext* s = current_session(L);
  if (key == "trace" && s != nullptr) {
    s->trace = lua_toboolean(L, 3);
    return 0;
  }
  return luaL_error(L, "client.%s is read-only", std::string(key).c_str());
}

}  // namespace

void open_client(lua_State* L) {
  lua_newtable(L);
  lua_newtable(L);
  lua_pushcfunction(L, client_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, client_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, -2);
  lua_setglobal(L, "client");
}

}  // namespace mailhook::policyd
