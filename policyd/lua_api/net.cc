// `net`: addresses and networks for scripts. net.reverseip(address,
// arpa_suffix_flag): the DNSBL / PTR form. net.cidr(text): a network
// object (m:contains(ip), tostring(m)) or nil, err. net.match(ip, list):
// ip is in one of the networks/addresses of `list` (a string or an array
// of strings and net.cidr objects). net.network(ip, bits): the network
// of ip with that prefix as canonical text ("2001:db8:1:2::/64"). The
// matching is mailcore/net/cidr.h's, the one the front and spf.check use;
// an IPv4-mapped IPv6 address is its IPv4 form. An invalid address gives
// nil, "invalid address"; an invalid network in a list is a script error.
#include "mailcore/net/cidr.h"
#include "policyd/dns/message.h"
#include "policyd/lua_api/modules.h"

namespace mailhook::policyd {
namespace {

constexpr const char* kCidrMeta = "mailhook.net.cidr";

int push_invalid(lua_State* L, const std::string& why) {
  lua_pushnil(L);
  lua_pushlstring(L, why.data(), why.size());
  return 2;
}

int net_reverseip(lua_State* L) {
  const std::string out = dns::reverse_name(luaL_checkstring(L, 1), lua_toboolean(L, 2));
  if (out.empty()) return push_invalid(L, "invalid address");
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

void push_cidr(lua_State* L, const net::Cidr& c) {
  auto* p = static_cast<net::Cidr*>(lua_newuserdatauv(L, sizeof(net::Cidr), 0));
  new (p) net::Cidr(c);  // trivially destructible: no __gc
  luaL_setmetatable(L, kCidrMeta);
}

std::string_view arg_text(lua_State* L, int i) {
  std::size_t n = 0;
  const char* s = luaL_checklstring(L, i, &n);
  return {s, n};
}

int net_cidr(lua_State* L) {
  std::string error;
  std::optional<net::Cidr> c = net::Cidr::parse(arg_text(L, 1), error);
  if (!c) return push_invalid(L, error);
  push_cidr(L, *c);
  return 1;
}

int cidr_contains(lua_State* L) {
  const auto* c = static_cast<net::Cidr*>(luaL_checkudata(L, 1, kCidrMeta));
  std::optional<net::Address> a = net::parse_address(arg_text(L, 2));
  lua_pushboolean(L, a && c->contains(*a));
  return 1;
}

int cidr_tostring(lua_State* L) {
  const auto* c = static_cast<net::Cidr*>(luaL_checkudata(L, 1, kCidrMeta));
  const std::string t = c->text();
  lua_pushlstring(L, t.data(), t.size());
  return 1;
}

// One entry of a net.match list: a net.cidr object or a CIDR/address text.
bool entry_contains(lua_State* L, int i, const net::Address& a) {
  if (const auto* c = static_cast<net::Cidr*>(luaL_testudata(L, i, kCidrMeta))) return c->contains(a);
  if (lua_type(L, i) != LUA_TSTRING) {
    luaL_error(L, "net.match: list entries are CIDR strings or net.cidr objects, not %s", luaL_typename(L, i));
  }
  std::string error;
  std::optional<net::Cidr> c = net::Cidr::parse(arg_text(L, i), error);
  if (!c) luaL_error(L, "net.match: %s", error.c_str());
  return c->contains(a);
}

int net_match(lua_State* L) {
  std::optional<net::Address> a = net::parse_address(arg_text(L, 1));
  if (!lua_istable(L, 2) && !lua_isstring(L, 2) && !luaL_testudata(L, 2, kCidrMeta)) {
    luaL_argerror(L, 2, "a list of networks expected");
  }
  if (!a) return push_invalid(L, "invalid address");
  bool found = false;
  if (!lua_istable(L, 2)) {
    found = entry_contains(L, 2, *a);
  } else {
    const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, 2));
    for (lua_Integer i = 1; i <= n && !found; ++i) {
      lua_rawgeti(L, 2, i);
      found = entry_contains(L, lua_gettop(L), *a);
      lua_pop(L, 1);
    }
  }
  lua_pushboolean(L, found);
  return 1;
}

int net_network(lua_State* L) {
  std::optional<net::Address> a = net::parse_address(arg_text(L, 1));
  const lua_Integer bits = luaL_checkinteger(L, 2);
  if (!a) return push_invalid(L, "invalid address");
  if (bits < 0 || bits > static_cast<lua_Integer>(a->width())) return push_invalid(L, "bad prefix length");
  const std::string t = net::Cidr::of(*a, static_cast<unsigned>(bits)).text();
  lua_pushlstring(L, t.data(), t.size());
  return 1;
}

}  // namespace

void open_net(lua_State* L) {
  luaL_newmetatable(L, kCidrMeta);
  lua_newtable(L);
  lua_pushcfunction(L, cidr_contains);
  lua_setfield(L, -2, "contains");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, cidr_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  const luaL_Reg fns[] = {{"reverseip", net_reverseip}, {"cidr", net_cidr},       {"match", net_match},
                          {"network", net_network},     {nullptr, nullptr}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setglobal(L, "net");
}

}  // namespace mailhook::policyd
