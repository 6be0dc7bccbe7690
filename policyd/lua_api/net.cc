// `net.reverseip(address, arpa_suffix_flag)`: the DNSBL / PTR form of an
// IPv4 or IPv6 address. An invalid address gives nil, "invalid address".
#include "policyd/dns/message.h"
#include "policyd/lua_api/modules.h"

namespace mailhook::policyd {
namespace {

int net_reverseip(lua_State* L) {
  const std::string out = dns::reverse_name(luaL_checkstring(L, 1), lua_toboolean(L, 2));
  if (out.empty()) {
    lua_pushnil(L);
    lua_pushstring(L, "invalid address");
    return 2;
  }
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

}  // namespace

void open_net(lua_State* L) {
  lua_newtable(L);
  lua_pushcfunction(L, net_reverseip);
  lua_setfield(L, -2, "reverseip");
  lua_setglobal(L, "net");
}

}  // namespace mailhook::policyd
