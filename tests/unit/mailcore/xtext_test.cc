// xtext (RFC 3461 4) and the DSN parameters ENVID/ORCPT (issue 19 finding
// 12: they went on to the smart host unchecked).
#include "mailcore/smtp/xtext.h"

#include <gtest/gtest.h>

using namespace mailhook::smtp;

TEST(Xtext, DecodesHexcharsOfEitherCase) {
  EXPECT_EQ(xtext_decode("a+2Bb"), "a+b");
  EXPECT_EQ(xtext_decode("a+2bb"), "a+b");
  EXPECT_EQ(xtext_decode("+0D+0A"), "\r\n");
  EXPECT_FALSE(xtext_decode("a+2"));
  EXPECT_FALSE(xtext_decode("a+"));
  EXPECT_FALSE(xtext_decode("a+G0"));
}

TEST(Xtext, StrictFormIsPrintableAsciiWithUpperCaseHexchars) {
  EXPECT_TRUE(is_xtext("QQ314159"));
  EXPECT_TRUE(is_xtext("a+2Bb"));
  EXPECT_FALSE(is_xtext("a+2bb"));
  EXPECT_FALSE(is_xtext("a=b"));
  EXPECT_FALSE(is_xtext("a b"));
  EXPECT_FALSE(is_xtext("a\rb"));
  EXPECT_FALSE(is_xtext("caf\xc3\xa9"));
}

TEST(Xtext, EnvidIsXtextOfAtMost100Characters) {
  EXPECT_TRUE(is_valid_envid("QQ314159"));
  EXPECT_TRUE(is_valid_envid(std::string(100, 'x')));
  EXPECT_FALSE(is_valid_envid(std::string(101, 'x')));
  EXPECT_FALSE(is_valid_envid(""));
  EXPECT_FALSE(is_valid_envid("a\rRCPT"));
  EXPECT_FALSE(is_valid_envid("a+zz"));
}

TEST(Xtext, OrcptIsAddrTypeSemicolonXtextOfAtMost500Characters) {
  EXPECT_TRUE(is_valid_orcpt("rfc822;user@example.com"));
  EXPECT_TRUE(is_valid_orcpt("rfc822;a+2Bb@example.com"));
  const std::string head = "rfc822;";
  EXPECT_TRUE(is_valid_orcpt(head + std::string(500 - head.size(), 'x')));
  EXPECT_FALSE(is_valid_orcpt(head + std::string(501 - head.size(), 'x')));
  EXPECT_FALSE(is_valid_orcpt("user@example.com"));
  EXPECT_FALSE(is_valid_orcpt(";user@example.com"));
  EXPECT_FALSE(is_valid_orcpt("rfc822;"));
  EXPECT_FALSE(is_valid_orcpt("rfc 822;a"));
  EXPECT_FALSE(is_valid_orcpt("rfc822;a\rb"));
}

TEST(Xtext, ControlCharacters) {
  EXPECT_TRUE(has_control(std::string("a\0b", 3)));
  EXPECT_TRUE(has_control("a\nb"));
  EXPECT_TRUE(has_control("\x7f"));
  EXPECT_FALSE(has_control("plain text"));
}
