// Address bytes and the per-IP limit key (--connection-limit-ipv6-prefix).
#include "frontend/server/client_address.h"

#include <arpa/inet.h>

#include <cstring>

namespace mailhook::front {

std::optional<std::vector<unsigned char>> address_bytes(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string s(text);
  unsigned char buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) return std::vector<unsigned char>(buf, buf + 4);
  if (inet_pton(AF_INET6, s.c_str(), buf) != 1) return std::nullopt;
  static constexpr unsigned char kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(buf, kV4Mapped, sizeof kV4Mapped) == 0) return std::vector<unsigned char>(buf + 12, buf + 16);
  return std::vector<unsigned char>(buf, buf + 16);
}

std::string connection_limit_key(std::string_view address, unsigned ipv6_prefix) {
  std::optional<std::vector<unsigned char>> bytes = address_bytes(address);
  if (!bytes) return std::string(address);
  char text[INET6_ADDRSTRLEN] = {};
  if (bytes->size() == 4) {
    inet_ntop(AF_INET, bytes->data(), text, sizeof text);
    return text;
  }
  if (ipv6_prefix > 128) ipv6_prefix = 128;
  unsigned char net[16] = {};
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned bits = ipv6_prefix >= (i + 1) * 8 ? 8 : (ipv6_prefix > i * 8 ? ipv6_prefix - i * 8 : 0);
    const auto mask = static_cast<unsigned char>(bits == 0 ? 0 : 0xff << (8 - bits));
    net[i] = (*bytes)[i] & mask;
  }
  inet_ntop(AF_INET6, net, text, sizeof text);
  return std::string(text) + "/" + std::to_string(ipv6_prefix);
}

}  // namespace mailhook::front
