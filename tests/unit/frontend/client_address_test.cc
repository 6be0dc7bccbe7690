// The per-IP connection limit's key: IPv4 as is, IPv6 by its network
// (issue 19 finding 12: each /128 counted apart, so one host's /64 had
// 2^64 slots).
#include "frontend/server/client_address.h"

#include <gtest/gtest.h>

using mailhook::front::address_bytes;
using mailhook::front::connection_limit_key;

TEST(ConnectionLimitKey, Ipv6ClientsOfOneSlash64ShareAKey) {
  EXPECT_EQ(connection_limit_key("2001:db8:1:2::1", 64), "2001:db8:1:2::/64");
  EXPECT_EQ(connection_limit_key("2001:db8:1:2:ffff:ffff:ffff:fffe", 64), "2001:db8:1:2::/64");
  EXPECT_NE(connection_limit_key("2001:db8:1:3::1", 64), connection_limit_key("2001:db8:1:2::1", 64));
}

TEST(ConnectionLimitKey, ThePrefixIsConfigurableUpToTheWholeAddress) {
  EXPECT_EQ(connection_limit_key("2001:db8:1:2::1", 128), "2001:db8:1:2::1/128");
  EXPECT_NE(connection_limit_key("2001:db8:1:2::1", 128), connection_limit_key("2001:db8:1:2::2", 128));
  EXPECT_EQ(connection_limit_key("2001:db8:1:2::1", 48), "2001:db8:1::/48");
  EXPECT_EQ(connection_limit_key("2001:db8:1:ff::1", 48), "2001:db8:1::/48");
  // A prefix inside a byte: /60 keeps the high nibble of the 8th byte.
  EXPECT_EQ(connection_limit_key("2001:db8:1:2f::1", 60), "2001:db8:1:20::/60");
}

TEST(ConnectionLimitKey, Ipv4AndMappedIpv4CountPerAddress) {
  EXPECT_EQ(connection_limit_key("192.0.2.7", 64), "192.0.2.7");
  EXPECT_EQ(connection_limit_key("::ffff:192.0.2.7", 64), "192.0.2.7");
  EXPECT_EQ(connection_limit_key("not an address", 64), "not an address");
}

TEST(AddressBytes, ParsesBothFamiliesAndNothingElse) {
  EXPECT_EQ(address_bytes("127.0.0.1")->size(), 4u);
  EXPECT_EQ(address_bytes("::1")->size(), 16u);
  EXPECT_FALSE(address_bytes("1.2.3"));
  EXPECT_FALSE(address_bytes(""));
  EXPECT_FALSE(address_bytes("::1\r\n"));
}
