// AUTH PLAIN/LOGIN decoding (issue 19 finding 7: a user name with LF was
// logged raw and forged whole log lines).
#include "mailcore/smtp/sasl.h"

#include <gtest/gtest.h>

#include "mailcore/smtp/base64.h"

using namespace mailhook::smtp;
using namespace std::string_literals;

TEST(Sasl, PlainSplitsAuthzidUserAndPassword) {
  const PlainCredentials c = decode_plain(base64_encode(std::string("admin\0user\0secret", 17)));
  EXPECT_EQ(c.error, SaslError::None);
  EXPECT_EQ(c.authzid, "admin");
  EXPECT_EQ(c.authcid, "user");
  EXPECT_EQ(c.password, "secret");
}

TEST(Sasl, PlainRefusesALineBreakInAnyField) {
  const std::string forged = "\0bob\nmailhook-front: authenticated user=root\0pw"s;
  EXPECT_EQ(decode_plain(base64_encode(forged)).error, SaslError::ControlChar);
  EXPECT_EQ(decode_plain(base64_encode(std::string("\0bob\0p\r", 7))).error, SaslError::ControlChar);
  EXPECT_EQ(decode_plain(base64_encode(forged)).authcid, "");
}

TEST(Sasl, PlainMalformedAndBadBase64) {
  EXPECT_EQ(decode_plain("=").error, SaslError::Malformed);
  EXPECT_EQ(decode_plain(base64_encode("no nuls")).error, SaslError::Malformed);
  EXPECT_EQ(decode_plain(base64_encode(std::string("\0a\0b\0c", 6))).error, SaslError::Malformed);
  EXPECT_EQ(decode_plain("!!!").error, SaslError::BadBase64);
}

TEST(Sasl, LoginFields) {
  EXPECT_EQ(decode_login_field(base64_encode("bob")).value, "bob");
  EXPECT_EQ(decode_login_field(base64_encode("bob\nuser=root")).error, SaslError::ControlChar);
  EXPECT_EQ(decode_login_field(base64_encode(std::string("b\0b", 3))).error, SaslError::Malformed);
  EXPECT_EQ(decode_login_field("%%").error, SaslError::BadBase64);
}
