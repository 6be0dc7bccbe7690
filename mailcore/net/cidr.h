// IP addresses and CIDR networks as bytes: the one matcher behind SPF's
// ip4/ip6/a/mx (RFC 7208 5.6), net.cidr/net.match/net.network in Lua and
// the front's --xclient-hosts. An IPv4-mapped IPv6 address (RFC 4291
// 2.5.5.2) is its IPv4 form everywhere. Pure (inet_pton/inet_ntop only):
// no sockets, no Asio, no allocation beyond the results; never throws.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailhook::net {

struct Address {
  std::array<std::uint8_t, 16> bytes{};  // IPv4: the first 4
  bool v4 = false;

  unsigned width() const { return v4 ? 32 : 128; }
  std::string text() const;  // canonical: dotted quad, or RFC 5952 IPv6
  friend bool operator==(const Address&, const Address&) = default;
};

// "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" (-> IPv4); nullopt otherwise.
std::optional<Address> parse_address(std::string_view text);

// The first `bits` bits of `a` and `b` are equal (both of one family).
bool same_prefix(const Address& a, const Address& b, unsigned bits);

class Cidr {
 public:
  // "192.0.2.0/24", "2001:db8::/32", or one address (all its bits).
  // Host bits may be set ("192.0.2.7/24" is the /24); a prefix length
  // beyond the family's width, with a sign or leading zeros, is an error.
  static std::optional<Cidr> parse(std::string_view text, std::string& error);
  // The network of `a` with `bits` bits (clamped to the family's width).
  static Cidr of(const Address& a, unsigned bits);

  bool contains(const Address& a) const;
  const Address& network() const { return network_; }
  unsigned bits() const { return bits_; }
  std::string text() const;  // "2001:db8:1:2::/64", "192.0.2.0/24"

 private:
  Address network_;
  unsigned bits_ = 0;
};

// A list of networks ("127.0.0.1/32,::1, 192.0.2.0/24"): commas and
// white space separate entries; empty entries are skipped.
class CidrList {
 public:
  static std::optional<CidrList> parse(std::string_view text, std::string& error);
  void add(const Cidr& c) { entries_.push_back(c); }
  bool contains(const Address& a) const;
  bool contains(std::string_view address) const;  // false when no address
  bool empty() const { return entries_.empty(); }
  std::size_t size() const { return entries_.size(); }

 private:
  std::vector<Cidr> entries_;
};

}  // namespace mailhook::net
