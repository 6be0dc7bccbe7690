// Address bytes and the per-IP limit key (--connection-limit-ipv6-prefix),
// on mailcore's one address parser and CIDR code (mailcore/net/cidr.h).
#include "frontend/server/client_address.h"

#include "mailcore/net/cidr.h"

namespace mailhook::front {

std::optional<std::vector<unsigned char>> address_bytes(std::string_view text) {
  std::optional<net::Address> a = net::parse_address(text);
  if (!a) return std::nullopt;
  return std::vector<unsigned char>(a->bytes.begin(), a->bytes.begin() + (a->v4 ? 4 : 16));
}

std::string connection_limit_key(std::string_view address, unsigned ipv6_prefix) {
  std::optional<net::Address> a = net::parse_address(address);
  if (!a) return std::string(address);
  if (a->v4) return a->text();
  return net::Cidr::of(*a, ipv6_prefix).text();
}

}  // namespace mailhook::front
