// Client addresses as bytes: parsing (IPv4, IPv6, v4-mapped IPv6 taken as
// IPv4) and the key the per-IP connection limit counts by, where an IPv6
// client counts by its network prefix (/64 by default), not its /128: one
// host holds a whole /64. Pure (inet_pton only); no sockets, no Asio.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailhook::front {

// 4 bytes for IPv4 (and v4-mapped IPv6), 16 for IPv6; nullopt otherwise.
std::optional<std::vector<unsigned char>> address_bytes(std::string_view text);

// What --max-connections-per-ip counts: the address itself for IPv4, its
// first `ipv6_prefix` bits for IPv6 ("2001:db8:1:2::/64"); anything that
// is no address is its own key.
std::string connection_limit_key(std::string_view address, unsigned ipv6_prefix);

}  // namespace mailhook::front
