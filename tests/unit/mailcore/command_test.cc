// SMTP command parser: verbs, paths, parameters, and hostile lines.
#include "mailcore/smtp/command.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>

#include "mailcore/smtp/ascii.h"
#include "mailcore/smtp/reply_text.h"

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

namespace {

// A deterministic stream of hostile lines: raw bytes, and valid commands
// with random bytes spliced in (so the lines reach the path and
// parameter rules, not only the control-character check).
class HostileLines {
 public:
  std::string next() {
    static constexpr std::string_view kStarts[] = {
        "MAIL FROM:<", "RCPT TO:<", "mail from: <a@b.example> ", "RCPT TO:<@a,@b:", "EHLO ", "HELO", "DATA",
        "QUIT ", "rset", "VRFY ", "AUTH PLAIN ", "XCLIENT ADDR=", "BDAT 10", "STARTTLS", "NOOP", "  \tHELP x",
        "RCPT TO:<postmaster>", "MAIL FROM:<> SIZE=", "MAIL TO:", "EXPN ", ""};
    std::string line(kStarts[below(std::size(kStarts))]);
    const std::size_t extra = below(24);
    for (std::size_t i = 0; i < extra; ++i) {
      switch (below(6)) {
        case 0: line.push_back(static_cast<char>(below(256))); break;  // any byte at all
        case 1: line.push_back(" <>@:=,.\t\"["[below(11)]); break;    // the parser's delimiters
        default: line.push_back(static_cast<char>('a' + below(26))); break;
      }
    }
    if (below(4) == 0) line += "> SIZE=100 BODY=8BITMIME";
    return line;
  }

 private:
  std::size_t below(std::size_t n) {  // xorshift64: the same lines on every run
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return static_cast<std::size_t>(state_ % n);
  }
  std::uint64_t state_ = 0x9e3779b97f4a7c15ull;
};

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

// What must hold of parse_command's answer to any line: the checks a
// caller relies on (no control byte in anything it passes on, no
// invented bytes, every refusal a valid reply).
void expect_sound(std::string_view line, const Command& c) {
  SCOPED_TRACE(::testing::PrintToString(std::string(line)));
  const bool nul = line.find('\0') != std::string_view::npos;
  EXPECT_EQ(c.error == ParseError::NulByte, nul);
  EXPECT_EQ(c.error == ParseError::ControlChar, !nul && has_control(line));
  if (c.error == ParseError::NulByte || c.error == ParseError::ControlChar) {
    EXPECT_TRUE(c.verb_text.empty() && c.argument.empty() && c.address.empty() && c.parameters.empty());
  }
  for (std::string_view part : {std::string_view(c.verb_text), std::string_view(c.argument), std::string_view(c.address)}) {
    EXPECT_FALSE(has_control(part));
    EXPECT_NE(line.find(part), std::string_view::npos) << "not from the line: " << part;
  }
  if (c.verb != Verb::Mail && c.verb != Verb::Rcpt) {
    EXPECT_TRUE(c.address.empty() && c.parameters.empty());
  }
  if (c.error == ParseError::None && (c.verb == Verb::Mail || c.verb == Verb::Rcpt)) {
    const bool special = c.address.empty() ? c.verb == Verb::Mail : (c.verb == Verb::Rcpt && iequals(c.address, "postmaster"));
    EXPECT_TRUE(special || is_valid_mailbox(c.address)) << c.address;
    for (const Parameter& p : c.parameters) {
      EXPECT_FALSE(p.name.empty());
      EXPECT_EQ(p.name, ascii_upper(p.name));
      EXPECT_FALSE(has_control(p.value));
    }
  }
  if (c.error != ParseError::None) {
    const Reply r = parse_error_reply(c);
    EXPECT_GE(r.code, 500);
    EXPECT_EQ(validate(r), ReplyError::None) << r.summary();
  }
  const Command again = parse_command(line);  // pure: the same line, the same answer
  EXPECT_TRUE(again.verb == c.verb && again.error == c.error && again.verb_text == c.verb_text &&
              again.argument == c.argument && again.address == c.address && again.parameters == c.parameters);
}

}  // namespace

TEST(CommandParser, SurvivesArbitraryBytes) {
  HostileLines lines;
  std::set<ParseError> errors;
  std::set<Verb> verbs;
  for (int i = 0; i < 20000; ++i) {
    const std::string line = lines.next();
    const Command c = parse_command(line);
    expect_sound(line, c);
    errors.insert(c.error);
    if (c.error == ParseError::None) verbs.insert(c.verb);
    if (HasFailure()) break;  // one line's trace is enough to read
  }
  // The lines reached every rule: every error, and accepted commands of
  // many verbs (a generator that stopped doing so would test nothing).
  EXPECT_EQ(errors.size(), 8u);
  EXPECT_EQ(verbs.size(), 16u);
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
