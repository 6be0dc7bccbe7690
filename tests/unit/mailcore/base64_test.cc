// base64 as SMTP AUTH uses it: round trips, padding, hostile input.
#include "mailcore/smtp/base64.h"

#include <gtest/gtest.h>

using namespace mailhook::smtp;

TEST(Base64, DecodesAuthPlainResponses) {
  EXPECT_EQ(base64_decode("AHVzZXIAcGFzcw=="), std::string("\0user\0pass", 10));
  EXPECT_EQ(base64_decode(""), "");
}

TEST(Base64, RoundTripsEveryLengthAndByte) {
  std::string s;
  for (int i = 0; i < 300; ++i) {
    s.push_back(static_cast<char>(i * 37));
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  }
}

TEST(Base64, RefusesMalformedInput) {
  EXPECT_FALSE(base64_decode("abc"));       // not a multiple of 4
  EXPECT_FALSE(base64_decode("ab!d"));      // not in the alphabet
  EXPECT_FALSE(base64_decode("a===")); 
  EXPECT_FALSE(base64_decode("ab=d"));      // data after padding
  EXPECT_FALSE(base64_decode("ab==abcd"));  // padding before the end
  EXPECT_FALSE(base64_decode("YW Jj"));
}
