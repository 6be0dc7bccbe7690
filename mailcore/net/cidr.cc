// Addresses and CIDR networks: see cidr.h.
#include "mailcore/net/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace mailhook::net {
namespace {

constexpr std::uint8_t kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// Clears every bit past the first `bits`.
Address masked(Address a, unsigned bits) {
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned keep = bits >= (i + 1) * 8 ? 8 : (bits > i * 8 ? bits - i * 8 : 0);
    a.bytes[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  return a;
}

// A prefix length: 1 to 3 digits, no sign, no leading zero (RFC 7208 5.6
// ip4-cidr-length / ip6-cidr-length), at most `width`.
std::optional<unsigned> parse_bits(std::string_view p, unsigned width) {
  if (p.empty() || p.size() > 3 || (p.size() > 1 && p[0] == '0')) return std::nullopt;
  unsigned n = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  if (n > width) return std::nullopt;
  return n;
}

}  // namespace

std::optional<Address> parse_address(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, text.data(), text.size());
  Address a;
  if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) {
    a.v4 = true;
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return std::nullopt;
  if (std::memcmp(a.bytes.data(), kV4Mapped, sizeof kV4Mapped) == 0) {
    std::memmove(a.bytes.data(), a.bytes.data() + 12, 4);
    std::fill(a.bytes.begin() + 4, a.bytes.end(), 0);
    a.v4 = true;
  }
  return a;
}

std::string Address::text() const {
  char out[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(v4 ? AF_INET : AF_INET6, bytes.data(), out, sizeof out) == nullptr) return "";
  return out;
}

bool same_prefix(const Address& a, const Address& b, unsigned bits) {
  if (a.v4 != b.v4) return false;
  bits = std::min(bits, a.width());
  return masked(a, bits).bytes == masked(b, bits).bytes;
}

std::optional<Cidr> Cidr::parse(std::string_view text, std::string& error) {
  const std::size_t slash = text.find('/');
  std::optional<Address> a = parse_address(text.substr(0, slash));
  if (!a) {
    error = "not an address: " + std::string(text.substr(0, slash));
    return std::nullopt;
  }
  // An IPv4-mapped network written as IPv6 counts its bits from 96.
  const bool mapped = a->v4 && text.substr(0, slash).find(':') != std::string_view::npos;
  unsigned bits = a->width();
  if (slash != std::string_view::npos) {
    std::optional<unsigned> n = parse_bits(text.substr(slash + 1), mapped ? 128 : a->width());
    if (!n || (mapped && *n < 96)) {
      error = "bad prefix length: " + std::string(text);
      return std::nullopt;
    }
    bits = mapped ? *n - 96 : *n;
  }
  return of(*a, bits);
}

Cidr Cidr::of(const Address& a, unsigned bits) {
  Cidr c;
  c.bits_ = std::min(bits, a.width());
  c.network_ = masked(a, c.bits_);
  return c;
}

bool Cidr::contains(const Address& a) const { return same_prefix(network_, a, bits_); }

std::string Cidr::text() const { return network_.text() + "/" + std::to_string(bits_); }

std::optional<CidrList> CidrList::parse(std::string_view text, std::string& error) {
  CidrList list;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t end = std::min(text.find_first_of(", \t", i), text.size());
    if (end > i) {
      std::optional<Cidr> c = Cidr::parse(text.substr(i, end - i), error);
      if (!c) return std::nullopt;
      list.add(*c);
    }
    i = end + 1;
  }
  return list;
}

bool CidrList::contains(const Address& a) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const Cidr& c) { return c.contains(a); });
}

bool CidrList::contains(std::string_view address) const {
  std::optional<Address> a = parse_address(address);
  return a && contains(*a);
}

}  // namespace mailhook::net
