// mailcore/net/cidr: the one address and CIDR matcher (SPF, net.*, the front).
#include "mailcore/net/cidr.h"

#include <gtest/gtest.h>

namespace mailhook::net {
namespace {

bool in(const char* network, const char* address) {
  std::string error;
  auto c = Cidr::parse(network, error);
  auto a = parse_address(address);
  return c && a && c->contains(*a);
}

TEST(Cidr, ParsesBothFamiliesAndMapsV4MappedToV4) {
  EXPECT_TRUE(parse_address("192.0.2.1")->v4);
  EXPECT_FALSE(parse_address("2001:db8::1")->v4);
  auto mapped = parse_address("::ffff:192.0.2.1");
  ASSERT_TRUE(mapped);
  EXPECT_TRUE(mapped->v4);
  EXPECT_EQ(mapped->text(), "192.0.2.1");
  EXPECT_FALSE(parse_address("192.0.2.256"));
  EXPECT_FALSE(parse_address("example.com"));
  EXPECT_FALSE(parse_address(""));
  EXPECT_FALSE(parse_address(std::string(100, '1')));
}

TEST(Cidr, MatchesPrefixesOfEachFamilyOnly) {
  EXPECT_TRUE(in("192.0.2.0/24", "192.0.2.200"));
  EXPECT_FALSE(in("192.0.2.0/24", "192.0.3.1"));
  EXPECT_TRUE(in("192.0.2.7/24", "192.0.2.1"));  // host bits ignored
  EXPECT_TRUE(in("0.0.0.0/0", "203.0.113.9"));
  EXPECT_FALSE(in("0.0.0.0/0", "2001:db8::1"));
  EXPECT_TRUE(in("2001:db8::/32", "2001:db8:ffff::1"));
  EXPECT_FALSE(in("2001:db8::/32", "2001:db9::1"));
  EXPECT_TRUE(in("192.0.2.0/24", "::ffff:192.0.2.9"));
  EXPECT_TRUE(in("::ffff:192.0.2.0/120", "192.0.2.9"));  // a mapped network counts bits from 96
  EXPECT_TRUE(in("192.0.2.1", "192.0.2.1"));
  EXPECT_FALSE(in("192.0.2.1", "192.0.2.2"));
  EXPECT_TRUE(in("192.0.2.1/31", "192.0.2.0"));
}

TEST(Cidr, RefusesBadPrefixLengths) {
  std::string error;
  for (const char* bad : {"192.0.2.0/33", "2001:db8::/129", "192.0.2.0/", "192.0.2.0/024", "192.0.2.0/-1",
                          "192.0.2.0/2a", "::ffff:192.0.2.0/95", "nonsense/8"}) {
    EXPECT_FALSE(Cidr::parse(bad, error)) << bad;
    EXPECT_FALSE(error.empty());
  }
  EXPECT_TRUE(Cidr::parse("192.0.2.0/32", error));
  EXPECT_TRUE(Cidr::parse("::/128", error));
}

TEST(Cidr, NetworkOfAnIpv6AddressIsCanonicalText) {
  EXPECT_EQ(Cidr::of(*parse_address("2001:DB8:1:2:3:4:5:6"), 64).text(), "2001:db8:1:2::/64");
  EXPECT_EQ(Cidr::of(*parse_address("192.0.2.77"), 24).text(), "192.0.2.0/24");
  EXPECT_EQ(Cidr::of(*parse_address("192.0.2.77"), 99).text(), "192.0.2.77/32");  // clamped
}

TEST(CidrList, ParsesCommaAndSpaceSeparatedLists) {
  std::string error;
  auto list = CidrList::parse("127.0.0.0/8, 2001:db8::/32,,::1", error);
  ASSERT_TRUE(list) << error;
  EXPECT_EQ(list->size(), 3u);
  EXPECT_TRUE(list->contains("127.1.2.3"));
  EXPECT_TRUE(list->contains("::1"));
  EXPECT_FALSE(list->contains("::2"));
  EXPECT_FALSE(list->contains("not an address"));
  EXPECT_FALSE(CidrList::parse("127.0.0.1/8,bad", error));
  EXPECT_TRUE(CidrList::parse("", error)->empty());
}

}  // namespace
}  // namespace mailhook::net
