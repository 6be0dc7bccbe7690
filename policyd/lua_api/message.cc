// `message`: the message changes of SPEC "Message changes", usable in
// hook.dot and hook.forward. Each call is checked here (header names per
// RFC 5322 2.2 ftext, no bare CR/LF in values) and recorded as a
// MessageChange on the session; the transport applies them.
#include <string>

#include "mailcore/event/change_check.h"
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {
namespace {

using K = MessageChange::Kind;

SessionContext& require_eom(lua_State* L, const char* fn) {
  SessionContext* s = current_session(L);
  if (s == nullptr || (s->phase != HookPhase::Dot && s->phase != HookPhase::Forward)) {
    luaL_error(L, "message.%s is not available in hook.%s", fn,
               s ? std::string(hook_name(s->phase)).c_str() : "load");
  }
  return *s;
}

// RFC 5322 2.2: field-name is 1*ftext, printable US-ASCII except ":".
std::string check_name(lua_State* L, int arg) {
  std::string name = luaL_checkstring(L, arg);
  if (!valid_header_name(name)) luaL_argerror(L, arg, "not a header field name");
  return name;
}

// A header value: folding (CRLF followed by WSP) is allowed, a bare CR or
// LF, or a CRLF not followed by whitespace, is not (header injection).
std::string check_value(lua_State* L, int arg) {
  std::size_t n = 0;
  const char* v = luaL_checklstring(L, arg, &n);
  if (!valid_header_value({v, n})) luaL_argerror(L, arg, "NUL or a line end in header value (fold with CRLF + whitespace)");
  return std::string(v, n);
}

int add_header(lua_State* L) {
  auto& s = require_eom(L, "add_header");
  s.changes.push_back({.kind = K::AddHeader, .name = check_name(L, 1), .value = check_value(L, 2)});
  return 0;
}

int insert_header(lua_State* L) {
  auto& s = require_eom(L, "insert_header");
  const lua_Integer index = luaL_checkinteger(L, 1);
  luaL_argcheck(L, index >= 0, 1, "index must be >= 0");
  s.changes.push_back({.kind = K::InsertHeader, .name = check_name(L, 2), .value = check_value(L, 3),
                       .index = static_cast<std::uint32_t>(index)});
  return 0;
}

int change_header(lua_State* L) {
  auto& s = require_eom(L, "change_header");
  std::string name = check_name(L, 1);
  const lua_Integer index = luaL_checkinteger(L, 2);
  luaL_argcheck(L, index >= 1, 2, "index is 1-based");
  const bool erase = lua_isnoneornil(L, 3);
  s.changes.push_back({.kind = K::ChangeHeader, .name = std::move(name),
                       .value = erase ? std::string() : check_value(L, 3),
                       .index = static_cast<std::uint32_t>(index), .erase = erase});
  return 0;
}

template <K Kind>
int address_change(lua_State* L) {
  auto& s = require_eom(L, "address change");
  std::string addr = luaL_checkstring(L, 1);
  if (!valid_address(addr)) luaL_argerror(L, 1, "not an address");
  s.changes.push_back({.kind = Kind, .value = std::move(addr)});
  return 0;
}

// message.add_rcpt(addr [, esmtp_args]): "NOTIFY=NEVER ORCPT=rfc822;a@b"
// goes to the smart host or spool with the recipient (behind a milter,
// SMFIR_ADDRCPT_PAR from our own milter engine, policyd/milter).
int add_rcpt(lua_State* L) {
  auto& s = require_eom(L, "add_rcpt");
  std::string addr = luaL_checkstring(L, 1);
  if (!valid_address(addr)) luaL_argerror(L, 1, "not an address");
  std::string args = luaL_optstring(L, 2, "");
  if (!valid_esmtp_arguments(args)) luaL_argerror(L, 2, "ESMTP arguments must be printable ASCII");
  s.changes.push_back({.kind = K::AddRcpt, .name = std::move(args), .value = std::move(addr)});
  return 0;
}

int replace_body(lua_State* L) {
  auto& s = require_eom(L, "replace_body");
  s.changes.push_back({.kind = K::ReplaceBody, .value = luaL_checkstring(L, 1)});
  return 0;
}

int quarantine(lua_State* L) {
  auto& s = require_eom(L, "quarantine");
  s.changes.push_back({.kind = K::Quarantine, .value = check_value(L, 1)});
  return 0;
}

int discard(lua_State* L) {
  auto& s = require_eom(L, "discard");
  s.changes.push_back({.kind = K::Discard});
  return 0;
}

constexpr luaL_Reg kFunctions[] = {
    {"add_header", add_header}, {"insert_header", insert_header}, {"change_header", change_header},
    {"add_rcpt", add_rcpt}, {"del_rcpt", address_change<K::DelRcpt>},
    {"change_from", address_change<K::ChangeFrom>}, {"replace_body", replace_body},
    {"quarantine", quarantine}, {"discard", discard}, {nullptr, nullptr},
};

}  // namespace

void open_message(lua_State* L) {
  luaL_newlib(L, kFunctions);
  lua_setglobal(L, "message");
}

}  // namespace mailhook::policyd
