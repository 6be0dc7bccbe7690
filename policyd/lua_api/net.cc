// `net.reverseip(address, arpa_suffix_flag)`: the DNSBL / PTR form of an
// IPv4 or IPv6 address. An invalid address gives nil, "invalid address".
#include <arpa/inet.h>

#include <string>

#include "policyd/lua_api/modules.h"

namespace mailhook::policyd {
namespace {

int net_reverseip(lua_State* L) {
  const char* text = luaL_checkstring(L, 1);
  const bool arpa = lua_toboolean(L, 2);
  unsigned char b[16];
  std::string out;
  if (inet_pton(AF_INET, text, b) == 1) {
    for (int i = 3; i >= 0; --i) {
      out += std::to_string(b[i]);
      if (i > 0) out += '.';
    }
    if (arpa) out += ".in-addr.arpa";
  } else if (inet_pton(AF_INET6, text, b) == 1) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
      out += kHex[b[i] & 0xf];
      out += '.';
      out += kHex[b[i] >> 4];
      if (i > 0) out += '.';
    }
    if (arpa) out += ".ip6.arpa";
  } else {
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
