// SMTP command parser: verbs, paths, parameters, and hostile lines.
#include "mailcore/smtp/command.h"

#include <gtest/gtest.h>

using namespace mailhook;
using namespace mailhook::smtp;

TEST(CommandParser, ParsesMailWithParametersCaseInsensitively) {
  Command c = parse_command("mail from:<a@example.com> SIZE=1000 BODY=8BITMIME");
  EXPECT_EQ(c.verb, Verb::Mail);
  EXPECT_EQ(c.error, ParseError::None);
  EXPECT_EQ(c.address, "a@example.com");
  ASSERT_EQ(c.parameters.size(), 2u);
  EXPECT_EQ(c.parameters[0], (Parameter{"SIZE", "1000"}));
  EXPECT_EQ(c.parameters[1], (Parameter{"BODY", "8BITMIME"}));
}

TEST(CommandParser, AcceptsTheCommonSpaceAfterTheColon) {
  EXPECT_EQ(parse_command("MAIL FROM: <a@example.com>").address, "a@example.com");
}

TEST(CommandParser, NullSenderIsValidOnlyForMail) {
  EXPECT_EQ(parse_command("MAIL FROM:<>").error, ParseError::None);
  EXPECT_EQ(parse_command("RCPT TO:<>").error, ParseError::BadAddress);
}

TEST(CommandParser, PostmasterWithoutDomainIsAValidRecipient) {
  EXPECT_EQ(parse_command("RCPT TO:<Postmaster>").error, ParseError::None);
  EXPECT_EQ(parse_command("RCPT TO:<user>").error, ParseError::BadAddress);
}

TEST(CommandParser, StripsSourceRoutes) {
  EXPECT_EQ(parse_command("RCPT TO:<@a.example,@b.example:u@c.example>").address, "u@c.example");
}

TEST(CommandParser, ReportsMissingAndExtraArguments) {
  EXPECT_EQ(parse_command("HELO").error, ParseError::MissingArg);
  EXPECT_EQ(parse_command("DATA now").error, ParseError::ExtraArg);
  EXPECT_EQ(parse_command("QUIT x").error, ParseError::ExtraArg);
  EXPECT_EQ(parse_command("NOOP anything").error, ParseError::None);
}

TEST(CommandParser, RefusesMalformedPathsAndParameters) {
  EXPECT_EQ(parse_command("MAIL FROM:a@example.com").error, ParseError::BadAddress);
  EXPECT_EQ(parse_command("MAIL FROM:<a@example.com").error, ParseError::BadAddress);
  EXPECT_EQ(parse_command("MAIL TO:<a@example.com>").error, ParseError::Syntax);
  EXPECT_EQ(parse_command("MAIL FROM:<a@example.com> =x").error, ParseError::BadParameter);
  EXPECT_EQ(parse_command("MAIL FROM:<a@example.com> SIZE=").error, ParseError::BadParameter);
  EXPECT_EQ(parse_command("RCPT TO:<a@@>").error, ParseError::BadAddress);
}

TEST(CommandParser, NulByteIsAnErrorWithItsOwnReply) {
  Command c = parse_command(std::string_view("NOOP\0x", 6));
  EXPECT_EQ(c.error, ParseError::NulByte);
  EXPECT_EQ(parse_error_reply(c).code, 500);
}

TEST(CommandParser, UnknownVerbKeepsItsText) {
  Command c = parse_command("WIBBLE foo");
  EXPECT_EQ(c.verb, Verb::Unknown);
  EXPECT_EQ(c.verb_text, "WIBBLE");
  EXPECT_EQ(c.argument, "foo");
}

TEST(CommandParser, ErrorRepliesCarryRfcCodes) {
  EXPECT_EQ(parse_error_reply(parse_command("MAIL FROM:<bad")).summary(), "501 5.1.7 Bad sender address syntax");
  EXPECT_EQ(parse_error_reply(parse_command("RCPT TO:<bad")).summary(), "501 5.1.3 Bad recipient address syntax");
}

TEST(CommandParser, SurvivesArbitraryBytes) {
  std::string s;
  for (int i = 0; i < 2000; ++i) {
    s.push_back(static_cast<char>((i * 131) % 256));
    parse_command(s);
  }
  SUCCEED();
}

// Issue 19 finding 9: a bare CR in EHLO reached the 250 reply, the
// Received header and X-Mailhook-Helo.
TEST(CommandParser, BareCrAnywhereInTheLineIsRefusedWith500) {
  for (const char* line : {"EHLO a\rb", "HELO x\r", "MAIL FROM:<a@b.example>\r", "NOOP \r", "\rQUIT",
                           "XCLIENT NAME=a\rb"}) {
    const Command c = parse_command(line);
    EXPECT_EQ(c.error, ParseError::ControlChar) << line;
    EXPECT_EQ(parse_error_reply(c).summary(), "500 5.5.2 Bare CR or control character in command line");
  }
}

TEST(CommandParser, OtherControlCharactersAreRefusedButTabIsNot) {
  EXPECT_EQ(parse_command("EHLO a\x1b[2Jb").error, ParseError::ControlChar);
  EXPECT_EQ(parse_command("EHLO a\x7f").error, ParseError::ControlChar);
  EXPECT_EQ(parse_command("EHLO a\x0b").error, ParseError::ControlChar);
  EXPECT_EQ(parse_command("EHLO\tclient.example").error, ParseError::None);
  EXPECT_EQ(parse_command("EHLO caf\xc3\xa9.example").error, ParseError::None);  // UTF-8 is not a control
}

// The one ESMTP-parameter parser: the front's MAIL/RCPT lines, the
// milter's arguments and the policy's added recipients all split alike.
TEST(EsmtpParameters, SplitUpperCasesKeywordsAndKeepsValues) {
  EXPECT_EQ(split_parameter("size=10"), (Parameter{"SIZE", "10"}));
  EXPECT_EQ(split_parameter("SMTPUTF8"), (Parameter{"SMTPUTF8", ""}));
  EXPECT_EQ(split_parameter("ORCPT=rfc822;A@B=c"), (Parameter{"ORCPT", "rfc822;A@B=c"}));
  const std::vector<Parameter> ps = split_parameters("  NOTIFY=NEVER   orcpt=rfc822;a@b ");
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0], (Parameter{"NOTIFY", "NEVER"}));
  EXPECT_EQ(ps[1], (Parameter{"ORCPT", "rfc822;a@b"}));
  EXPECT_TRUE(split_parameters("").empty());
  EXPECT_TRUE(is_valid_parameter("X-FOO=1"));
  EXPECT_TRUE(is_valid_parameter("SMTPUTF8"));
  EXPECT_FALSE(is_valid_parameter("SIZE="));
  EXPECT_FALSE(is_valid_parameter("-X=1"));
  EXPECT_FALSE(is_valid_parameter("=1"));
  EXPECT_FALSE(is_valid_parameter("A_B=1"));
  // The command parser refuses what is_valid_parameter refuses.
  EXPECT_EQ(parse_command("MAIL FROM:<a@example.com> SIZE=").error, ParseError::BadParameter);
}
