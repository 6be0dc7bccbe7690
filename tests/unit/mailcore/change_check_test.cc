// mailcore/event/change_check: the one checker of message changes.
#include "mailcore/event/change_check.h"

#include <gtest/gtest.h>

namespace mailhook {
namespace {

using K = MessageChange::Kind;

TEST(ChangeCheck, HeadersFoldButNeverInject) {
  EXPECT_EQ(check_change({.kind = K::AddHeader, .name = "X-A", .value = "one\r\n two"}), ChangeError::None);
  EXPECT_EQ(check_change({.kind = K::AddHeader, .name = "X-A", .value = "one\r\nBcc: evil@x"}), ChangeError::HeaderValue);
  EXPECT_EQ(check_change({.kind = K::AddHeader, .name = "X-A", .value = "one\ntwo"}), ChangeError::HeaderValue);
  EXPECT_EQ(check_change({.kind = K::AddHeader, .name = "X-A", .value = "one\r"}), ChangeError::HeaderValue);
  EXPECT_EQ(check_change({.kind = K::AddHeader, .name = "X-A", .value = std::string("a\0b", 3)}),
            ChangeError::HeaderValue);
  EXPECT_EQ(check_change({.kind = K::InsertHeader, .name = "X A", .value = "v"}), ChangeError::HeaderName);
  EXPECT_EQ(check_change({.kind = K::ChangeHeader, .name = "X:A", .value = "v"}), ChangeError::HeaderName);
  EXPECT_EQ(check_change({.kind = K::ChangeHeader, .name = "", .value = "v"}), ChangeError::HeaderName);
}

TEST(ChangeCheck, EnvelopeChanges) {
  EXPECT_EQ(check_change({.kind = K::AddRcpt, .name = "NOTIFY=NEVER", .value = "a@b"}), ChangeError::None);
  EXPECT_EQ(check_change({.kind = K::AddRcpt, .name = "NOTIFY=NEVER\r\nRCPT", .value = "a@b"}),
            ChangeError::Arguments);
  EXPECT_EQ(check_change({.kind = K::DelRcpt, .value = "a@b>\r\nRCPT TO:<c"}), ChangeError::Address);
  EXPECT_EQ(check_change({.kind = K::ChangeFrom, .value = ""}), ChangeError::None);  // the null sender
  EXPECT_EQ(check_change({.kind = K::Quarantine, .value = "why\nnot"}), ChangeError::Text);
  EXPECT_EQ(check_change({.kind = K::ReplaceBody, .value = "any\r\nbytes\n"}), ChangeError::None);
  EXPECT_EQ(change_error_text(ChangeError::Address), "not an address");
}

}  // namespace
}  // namespace mailhook
