// policyd/map: the access map parser (comments, folding, bad lines), the
// lookup order, CIDR matching with IPv4-mapped addresses, and the shared
// store parsing a file once per change for every reader.
#include "policyd/map/access_map.h"

#include <gtest/gtest.h>

#include "policyd/map/map_store.h"

namespace mailhook::policyd::map {
namespace {

std::shared_ptr<const AccessMap> parse(std::string_view text) {
  std::string error;
  auto m = AccessMap::parse(text, error);
  EXPECT_TRUE(m) << error;
  return m;
}

std::string value(const AccessMap& m, std::string_view key) {
  const auto found = m.lookup(key);
  return found ? found->value : "-";
}

TEST(AccessMap, CommentsBlankLinesAndContinuationLines) {
  const auto m = parse("# a comment\n\n  # indented comment\nkey first part\n  second part\r\nother  x\n");
  ASSERT_TRUE(m);
  EXPECT_EQ(value(*m, "key"), "first part second part");
  EXPECT_EQ(value(*m, "other"), "x");
  EXPECT_EQ(m->size(), 2u);
}

TEST(AccessMap, BadLinesNameTheirLine) {
  std::string error;
  EXPECT_FALSE(AccessMap::parse("a b\nlonely\n", error));
  EXPECT_EQ(error, "line 2: a key without a value");
  EXPECT_FALSE(AccessMap::parse("  continued\n", error));
  EXPECT_EQ(error, "line 1: a continuation line without an entry before it");
  EXPECT_FALSE(AccessMap::parse("/(a)\\1/ x\n", error));
  EXPECT_EQ(error, "line 1: a back-reference (not POSIX ERE; refused)");
  EXPECT_FALSE(AccessMap::parse("/a(/ x\n", error));
  EXPECT_EQ(error.rfind("line 1: bad pattern", 0), 0u) << error;
  EXPECT_FALSE(AccessMap::parse("/unclosed x\n", error));
  EXPECT_FALSE(AccessMap::parse("300.1.1.0/24 x\n", error));
  EXPECT_FALSE(AccessMap::parse(std::string_view("a\0b x\n", 6), error));
  EXPECT_EQ(error, "line 1: a NUL byte");
}

TEST(AccessMap, FirstEntryForAKeyWins) {
  const auto m = parse("Example.com first\nexample.COM second\n");
  EXPECT_EQ(value(*m, "EXAMPLE.com"), "first");
}

TEST(AccessMap, AddressOrderIsAddressDomainParentsThenLocalPart) {
  const auto m = parse("user@sub.example.com address\nsub.example.com domain\nexample.com parent\nuser@ localpart\n");
  EXPECT_EQ(value(*m, "user@sub.example.com"), "address");
  EXPECT_EQ(value(*m, "other@sub.example.com"), "domain");
  EXPECT_EQ(value(*m, "other@a.b.example.com"), "parent");
  EXPECT_EQ(value(*m, "user@elsewhere.test"), "localpart");
  EXPECT_EQ(value(*m, "nobody@elsewhere.test"), "-");
}

TEST(AccessMap, NullSenderIsLookedUpAsAngleBrackets) {
  const auto m = parse("<> REJECT no bounces here\n");
  EXPECT_EQ(value(*m, ""), "REJECT no bounces here");
}

TEST(AccessMap, IpOrderIsExactThenOctetsThenCidrsInFileOrder) {
  const auto m = parse("10.1.2.3 exact\n10.1 octets\n10.0.0.0/8 wide\n10.9.0.0/16 narrow-but-later\n"
                       "2001:db8::1 v6-exact\n2001:db8::/64 v6-net\n");
  EXPECT_EQ(value(*m, "10.1.2.3"), "exact");
  EXPECT_EQ(value(*m, "10.1.200.1"), "octets");
  EXPECT_EQ(value(*m, "10.9.1.1"), "wide");
  EXPECT_EQ(value(*m, "2001:0DB8:0::1"), "v6-exact");  // any spelling of the address
  EXPECT_EQ(value(*m, "2001:db8::ffff"), "v6-net");
  EXPECT_EQ(value(*m, "2001:db8:0:1::1"), "-");
  EXPECT_EQ(value(*m, "::ffff:10.9.1.1"), "wide");  // IPv4-mapped is the IPv4 client
}

TEST(AccessMap, RegexEntriesAreExtendedCaseInsensitiveAndLast) {
  const auto m = parse("/^(mail|smtp)[0-9]*\\.example\\.org$/ pattern\nsmtp1.example.org exact\n/ with space / spaced\n");
  EXPECT_EQ(value(*m, "smtp1.example.org"), "exact");
  EXPECT_EQ(value(*m, "MAIL22.example.org"), "pattern");
  EXPECT_EQ(value(*m, "a with space here"), "spaced");
}

// CIDR entries go through mailcore/net/cidr (the one matcher): host bits
// set, IPv4-mapped clients and networks, the family kept apart.
TEST(AccessMap, CidrEntriesUseTheOneMatcher) {
  const auto m = parse("192.0.2.77/24 v4\n::ffff:198.51.100.0/120 mapped\n2001:db8::/32 v6\n");
  ASSERT_TRUE(m);
  EXPECT_EQ(value(*m, "192.0.2.255"), "v4");
  EXPECT_EQ(value(*m, "::ffff:192.0.2.1"), "v4");
  EXPECT_EQ(value(*m, "192.0.3.0"), "-");
  EXPECT_EQ(value(*m, "198.51.100.9"), "mapped");
  EXPECT_EQ(value(*m, "2001:db8:ffff::1"), "v6");
  EXPECT_EQ(value(*parse("0.0.0.0/0 any\n"), "203.0.113.9"), "any");
  EXPECT_EQ(value(*parse("0.0.0.0/0 any\n"), "2001:db8::1"), "-");
  for (const char* bad : {"192.0.2.0/33 x\n", "192.0.2.0/ x\n", "2001:db8::/129 x\n", "host.example/24 x\n"}) {
    std::string error;
    EXPECT_FALSE(AccessMap::parse(bad, error)) << bad;
    EXPECT_NE(error.find("line 1: not a CIDR network"), std::string::npos) << error;
  }
}

TEST(MapStore, ParsesOncePerChangeForEveryReader) {
  MapStore store;
  int reads = 0;
  std::string text = "k one\n";
  FileStamp stamp{1, 2, 6, 100, 0};
  const FileReader read = [&](FileStamp& s, std::string&) -> std::optional<std::string> {
    ++reads;
    s = stamp;
    return text;
  };
  std::string error;
  const auto a = store.get("/maps/access", stamp, read, error);
  const auto b = store.get("/maps/access", stamp, read, error);  // another worker, same file
  EXPECT_EQ(reads, 1);
  EXPECT_EQ(a.map, b.map);
  text = "k two\n";
  stamp.mtime_sec = 101;
  const auto c = store.get("/maps/access", stamp, read, error);
  EXPECT_EQ(reads, 2);
  EXPECT_EQ(c.map->lookup("k")->value, "two");
  EXPECT_EQ(a.map->lookup("k")->value, "one");  // the old snapshot is untouched for who holds it
}

TEST(MapStore, AFailedReloadIsReportedOnceAndKeepsTheLastGoodMap) {
  MapStore store;
  std::string text = "k one\n";
  FileStamp stamp{1, 2, 6, 100, 0};
  int reads = 0;
  const FileReader read = [&](FileStamp& s, std::string&) -> std::optional<std::string> {
    ++reads;
    s = stamp;
    return text;
  };
  std::string error;
  store.get("/m", stamp, read, error);
  text = "broken\n";
  stamp.mtime_sec = 101;
  auto s = store.get("/m", stamp, read, error);
  EXPECT_EQ(error, "line 1: a key without a value");
  EXPECT_EQ(s.map->lookup("k")->value, "one");
  error.clear();
  s = store.get("/m", stamp, read, error);
  EXPECT_TRUE(error.empty());
  EXPECT_EQ(reads, 2);  // not read again until it changes
}

}  // namespace
}  // namespace mailhook::policyd::map
