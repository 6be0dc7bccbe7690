// inet_pton-based parsing and prefix comparison for access maps (network.h).
#include "policyd/map/network.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace mailhook::policyd::map {

std::optional<IpAddress> parse_address(std::string_view text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  const std::string s(text);
  IpAddress ip;
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) return ip;
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) != 1) return std::nullopt;
  // RFC 4291 2.5.5.2: ::ffff:a.b.c.d is the IPv4 client.
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(ip.bytes.data(), kMapped, 12) == 0) {
    std::memmove(ip.bytes.data(), ip.bytes.data() + 12, 4);
    std::memset(ip.bytes.data() + 4, 0, 12);
    return ip;
  }
  ip.v6 = true;
  return ip;
}

std::optional<Network> parse_network(std::string_view text) {
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::optional<IpAddress> ip = parse_address(text.substr(0, slash));
  const std::string_view len = text.substr(slash + 1);
  int bits = -1;
  const auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), bits);
  if (!ip || len.empty() || ec != std::errc() || end != len.data() + len.size()) return std::nullopt;
  // An IPv4-mapped base written in IPv6 form keeps its IPv6 prefix length.
  const bool mapped_v6 = !ip->v6 && text.substr(0, slash).find(':') != std::string_view::npos;
  if (mapped_v6) bits -= 96;
  if (bits < 0 || bits > (ip->v6 ? 128 : 32)) return std::nullopt;
  Network n{*ip, bits};
  for (int i = bits; i < 128; ++i) n.base.bytes[static_cast<std::size_t>(i / 8)] &= static_cast<std::uint8_t>(~(0x80u >> (i % 8)));
  return n;
}

bool contains(const Network& net, const IpAddress& ip) {
  if (net.base.v6 != ip.v6) return false;
  for (int i = 0; i < net.bits; ++i) {
    const std::uint8_t mask = static_cast<std::uint8_t>(0x80u >> (i % 8));
    const auto byte = static_cast<std::size_t>(i / 8);
    if ((net.base.bytes[byte] & mask) != (ip.bytes[byte] & mask)) return false;
  }
  return true;
}

std::string address_text(const IpAddress& ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(ip.v6 ? AF_INET6 : AF_INET, ip.bytes.data(), buf, sizeof buf);
  return buf;
}

}  // namespace mailhook::policyd::map
