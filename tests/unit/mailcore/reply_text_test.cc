// Reply validator: what scripts and policyd may send, and what never
// reaches the wire.
#include "mailcore/smtp/reply_text.h"

#include <gtest/gtest.h>

using namespace mailhook;
using namespace mailhook::smtp;

TEST(ReplyText, ParsesSingleLineWithEnhancedCode) {
  auto p = parse_reply("550 5.7.1 Go away\r\n");
  ASSERT_TRUE(p.reply);
  EXPECT_EQ(p.reply->code, 550);
  EXPECT_EQ(p.reply->enhanced, "5.7.1");
  EXPECT_EQ(p.reply->lines, std::vector<std::string>{"Go away"});
  EXPECT_EQ(p.reply->wire(), "550 5.7.1 Go away\r\n");
}

TEST(ReplyText, AcceptsAMissingFinalCrlf) {
  auto p = parse_reply("250 ok");
  ASSERT_TRUE(p.reply);
  EXPECT_EQ(p.reply->wire(), "250 ok\r\n");
}

TEST(ReplyText, ParsesMultiLineReplies) {
  auto p = parse_reply("250-first\r\n250-second\r\n250 last\r\n");
  ASSERT_TRUE(p.reply);
  EXPECT_EQ(p.reply->lines.size(), 3u);
  EXPECT_EQ(p.reply->wire(), "250-first\r\n250-second\r\n250 last\r\n");
}

TEST(ReplyText, RefusesASmuggledCommand) {
  EXPECT_FALSE(parse_reply("250 ok\r\nRCPT TO:<x@y>\r\n").reply);
  EXPECT_EQ(parse_reply("250 ok\nRCPT TO:<x@y>").error, ReplyError::ControlChar);
  EXPECT_EQ(parse_reply("250 ok\rX").error, ReplyError::ControlChar);
  EXPECT_EQ(parse_reply(std::string_view("250 a\0b", 7)).error, ReplyError::ControlChar);
}

TEST(ReplyText, RefusesBadCodesAndContinuations) {
  EXPECT_EQ(parse_reply("").error, ReplyError::Empty);
  EXPECT_EQ(parse_reply("150 no").error, ReplyError::BadCode);
  EXPECT_EQ(parse_reply("650 no").error, ReplyError::BadCode);
  EXPECT_EQ(parse_reply("25 no").error, ReplyError::BadCode);
  EXPECT_EQ(parse_reply("250-a\r\n550 b\r\n").error, ReplyError::CodeMismatch);
  EXPECT_EQ(parse_reply("250-a\r\n").error, ReplyError::BadContinuation);
  EXPECT_EQ(parse_reply("250 a\r\n250 b\r\n").error, ReplyError::BadContinuation);
  EXPECT_EQ(parse_reply("250xa").error, ReplyError::BadSeparator);
}

TEST(ReplyText, EnhancedCodeClassMustMatch) {
  EXPECT_EQ(parse_reply("550 4.7.1 no").error, ReplyError::BadEnhancedCode);
  EXPECT_TRUE(parse_reply("451 4.3.0 later").reply);
}

TEST(ReplyText, LineLengthLimitAtItsEdge) {
  const std::string ok = "250 " + std::string(512 - 6, 'a');
  EXPECT_TRUE(parse_reply(ok).reply);
  EXPECT_EQ(parse_reply(ok + "a").error, ReplyError::LineTooLong);
}

TEST(ReplyText, ValidateChecksStructuredReplies) {
  EXPECT_EQ(validate(Reply{250, "", {"ok"}}), ReplyError::None);
  EXPECT_EQ(validate(Reply{250, "", {"ok\r\nx"}}), ReplyError::ControlChar);
  EXPECT_EQ(validate(Reply{700, "", {"x"}}), ReplyError::BadCode);
  EXPECT_EQ(validate(Reply{250, "5.0.0", {"x"}}), ReplyError::BadEnhancedCode);
}
