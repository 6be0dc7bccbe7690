// IP addresses and CIDR networks for access maps: parse "192.0.2.0/24",
// "2001:db8::/32", a bare address, and test membership (IPv4-mapped IPv6
// addresses count as their IPv4 address). Pure. Kept behind these few
// functions so the map can move to mailcore/net/cidr.* (issue 23's net
// helpers) by changing this file only.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mailhook::policyd::map {

struct IpAddress {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  // v4: the first 4
};

struct Network {
  IpAddress base;  // host bits cleared
  int bits = 0;
};

// "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" (as IPv4); nullopt otherwise.
std::optional<IpAddress> parse_address(std::string_view text);
// "192.0.2.0/24", "2001:db8::/32"; host bits set after the prefix are
// cleared. nullopt when it is not one.
std::optional<Network> parse_network(std::string_view text);
bool contains(const Network& net, const IpAddress& ip);
// The canonical text (inet_ntop) of an address.
std::string address_text(const IpAddress& ip);

}  // namespace mailhook::policyd::map
