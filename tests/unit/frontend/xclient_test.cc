// XCLIENT attributes (issue 19 finding 10): decoded values with CR, LF or
// NUL are refused and change nothing.
#include "frontend/server/xclient.h"

#include <gtest/gtest.h>

using namespace mailhook;
using namespace mailhook::front;

namespace {
std::string apply(const std::string& attrs, ClientFacts& f, std::string& helo) {
  bool esmtp = true;
  return apply_xclient(attrs, f, helo, esmtp);
}
}  // namespace

TEST(Xclient, AnEncodedLineBreakInAValueIsRefusedAndNothingChanges) {
  ClientFacts f;
  f.host = "before";
  std::string helo = "h";
  EXPECT_EQ(apply("NAME=evil+0D+0AX-Mailhook-To:+20<x@y>", f, helo), "control character in NAME");
  EXPECT_EQ(f.host, "before");
  EXPECT_EQ(apply("ADDR=192.0.2.1 HELO=a+0Ab", f, helo), "control character in HELO");
  EXPECT_EQ(f.address, "");
  EXPECT_EQ(helo, "h");
  EXPECT_EQ(apply("LOGIN=root+00", f, helo), "control character in LOGIN");
  EXPECT_EQ(apply("NAME=a+0Db", f, helo), "control character in NAME");
  EXPECT_EQ(apply("NAME=a+7Fb", f, helo), "control character in NAME");
}

TEST(Xclient, PlainValuesStillApply) {
  ClientFacts f;
  std::string helo;
  EXPECT_EQ(apply("NAME=mail.example.org ADDR=IPV6:2001:db8::1 PORT=25 LOGIN=a+2Bb HELO=relay.example", f, helo), "");
  EXPECT_EQ(f.host, "mail.example.org");
  EXPECT_EQ(f.address, "2001:db8::1");
  EXPECT_EQ(f.auth_user, "a+b");
  EXPECT_EQ(helo, "relay.example");
}

TEST(Xclient, DestaddrMustBeAnAddress) {
  ClientFacts f;
  std::string helo;
  EXPECT_NE(apply("DESTADDR=not-an-ip", f, helo), "");
  EXPECT_EQ(apply("DESTADDR=192.0.2.9", f, helo), "");
  EXPECT_EQ(f.local_address, "192.0.2.9");
}

TEST(CidrList, MatchesWithoutAsio) {
  std::string error;
  auto list = CidrList::parse("127.0.0.0/8,2001:db8::/32", error);
  ASSERT_TRUE(list) << error;
  EXPECT_TRUE(list->contains("127.1.2.3"));
  EXPECT_TRUE(list->contains("::ffff:127.0.0.1"));
  EXPECT_TRUE(list->contains("2001:db8:ffff::1"));
  EXPECT_FALSE(list->contains("2001:db9::1"));
  EXPECT_FALSE(CidrList::parse("127.0.0.1/33", error));
}
