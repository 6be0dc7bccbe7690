// policyd/milter/milter_state: macros replaced per stage and capped, a
// session's macros gone at QUIT_NC and at a second CONNECT, and the
// message limits (size, line, header count and bytes) at their edges.
#include "policyd/milter/milter_state.h"

#include <gtest/gtest.h>

#include <string>

#include "policyd/milter/milter_codec.h"

namespace mailhook::policyd::milter {
namespace {

using namespace std::string_literals;

std::string macro_data(char stage, std::initializer_list<std::pair<std::string, std::string>> pairs) {
  std::string d(1, stage);
  for (const auto& [n, v] : pairs) d += n + '\0' + v + '\0';
  return d;
}

std::string value_of(const ConnectionState& s, std::string_view name) {
  const std::string* v = s.macro(name);
  return v ? *v : "(none)";
}

TEST(MilterState, AMacroPacketReplacesItsStageAndDoesNotMerge) {
  ConnectionState s(StateLimits{});
  s.take('D', macro_data('M', {{"{auth_authen}", "bob"}, {"{mail_addr}", "a@b"}}));
  EXPECT_EQ(value_of(s, "{auth_authen}"), "bob");
  s.take('D', macro_data('M', {{"{mail_addr}", "c@d"}}));
  EXPECT_EQ(value_of(s, "{auth_authen}"), "(none)");
  EXPECT_EQ(value_of(s, "{mail_addr}"), "c@d");
  EXPECT_EQ(s.macro_count(), 1u);
  EXPECT_EQ(s.macro_bytes(), "{mail_addr}c@d"s.size());
}

TEST(MilterState, ThreeHundredDistinctMacrosInOneStageHoldOne) {
  ConnectionState s(StateLimits{});
  const std::string big(100 * 1024, 'v');
  for (int i = 0; i < 300; ++i) {
    const auto step = s.take('D', macro_data('H', {{"{m" + std::to_string(i) + "}", big}}));
    ASSERT_FALSE(step.close);
  }
  EXPECT_EQ(s.macro_count(), 1u);
  EXPECT_LT(s.macro_bytes(), 101u * 1024);
}

TEST(MilterState, ALaterStageHidesAnEarlierOne) {
  ConnectionState s(StateLimits{});
  s.take('D', macro_data('R', {{"i", "rcpt"}}));
  s.take('D', macro_data('C', {{"{i}", "conn"}}));  // "{i}" and "i" are one macro
  EXPECT_EQ(value_of(s, "i"), "rcpt");
}

TEST(MilterState, MacroCountAndBytesAreCappedAtTheirEdges) {
  StateLimits l;
  l.max_macros = 3;
  l.max_macro_bytes = 10;
  ConnectionState s(l);
  EXPECT_FALSE(s.take('D', macro_data('C', {{"a", "1"}, {"b", "2"}})).close);
  EXPECT_FALSE(s.take('D', macro_data('H', {{"c", "3"}})).close);  // 3 pairs, 6 bytes
  const auto four = s.take('D', macro_data('M', {{"d", "4"}}));
  EXPECT_TRUE(four.close);
  EXPECT_EQ(four.why, "--milter-max-macros");
  EXPECT_FALSE(s.take('D', macro_data('H', {{"c", "34567"}})).close);  // replaces H: 4 + 6 = 10 bytes
  const auto eleven = s.take('D', macro_data('H', {{"c", "345678"}}));
  EXPECT_TRUE(eleven.close);
  EXPECT_EQ(eleven.why, "--milter-max-macro-bytes");
  EXPECT_EQ(s.macro_bytes(), 10u);  // the refused packet took nothing
}

TEST(MilterState, QuitNcLeavesNothingForTheNextSession) {
  ConnectionState s(StateLimits{});
  s.take('D', macro_data('C', {{"j", "mx"}}));
  s.take('C', "x\0004"s);
  s.take('D', macro_data('M', {{"{auth_authen}", "bob"}}));
  s.take('M', "<bob@example.com>\0"s);
  s.take('K', "");
  EXPECT_EQ(s.macro_count(), 0u);
  EXPECT_EQ(value_of(s, "{auth_authen}"), "(none)");
  EXPECT_EQ(value_of(s, "j"), "(none)");
}

TEST(MilterState, ASecondConnectKeepsOnlyTheConnectMacrosSentForIt) {
  ConnectionState s(StateLimits{});
  s.take('D', macro_data('C', {{"j", "first"}}));
  s.take('C', "x\0004"s);
  EXPECT_EQ(value_of(s, "j"), "first");
  s.take('D', macro_data('M', {{"{auth_authen}", "bob"}}));
  s.take('C', "x\0004"s);  // no connect macros for this one
  EXPECT_EQ(value_of(s, "j"), "(none)");
  EXPECT_EQ(value_of(s, "{auth_authen}"), "(none)");
  s.take('D', macro_data('C', {{"j", "third"}}));
  s.take('C', "x\0004"s);
  EXPECT_EQ(value_of(s, "j"), "third");
}

TEST(MilterState, ANewTransactionDropsTheLastOnesRecipientMacros) {
  ConnectionState s(StateLimits{});
  s.take('D', macro_data('M', {{"{mail_addr}", "a"}}));
  s.take('D', macro_data('R', {{"{rcpt_addr}", "b"}}));
  s.take('M', "<a>\0"s);
  EXPECT_EQ(value_of(s, "{rcpt_addr}"), "(none)");
  EXPECT_EQ(value_of(s, "{mail_addr}"), "a");
}

TEST(MilterState, MessageSizeAtTheEdge) {
  StateLimits l;
  l.max_message_size = 20;
  ConnectionState s(l);
  s.take('L', "Subject\0x\0"s);  // "Subject: x\r\n": 12
  s.take('N', "");                // 14
  EXPECT_EQ(s.take('B', "12345\r").refused_now, Refusal::None);  // 20
  EXPECT_EQ(s.message_size(), 20u);
  EXPECT_EQ(s.take('B', "\n").refused_now, Refusal::MessageTooBig);
  EXPECT_EQ(s.take('B', "more").refused_now, Refusal::None);  // once, at the packet that crossed it
  EXPECT_EQ(s.refusal(), Refusal::MessageTooBig);
  EXPECT_EQ(refusal_reply(s.refusal()).summary(), "552 5.3.4 Message size exceeds fixed limit");
  s.take('M', "<a>\0"s);  // the next message starts afresh
  EXPECT_EQ(s.refusal(), Refusal::None);
  EXPECT_EQ(s.message_size(), 0u);
}

TEST(MilterState, LineLimitCountsTheCrlfAndSeesItAcrossPackets) {
  StateLimits l;
  l.max_line = 10;
  ConnectionState s(l);
  EXPECT_EQ(s.take('B', "12345678\r\n").refused_now, Refusal::None);  // 10 with CRLF
  EXPECT_EQ(s.take('B', "12345678\r").refused_now, Refusal::None);
  EXPECT_EQ(s.take('B', "\nab\r\n").refused_now, Refusal::None);
  EXPECT_EQ(s.take('B', "123456789\r\n").refused_now, Refusal::LineTooLong);  // 11
  s.end_message();
  EXPECT_EQ(s.take('B', "1234567\n89").refused_now, Refusal::LineTooLong);  // a bare LF ends no line
  s.end_message();
  EXPECT_EQ(s.take('B', "123456789").refused_now, Refusal::None);
  EXPECT_EQ(s.take('B', "0").refused_now, Refusal::LineTooLong);  // 10 bytes and no end yet
}

TEST(MilterState, HeaderCountAndBytesAtTheirEdges) {
  StateLimits l;
  l.max_headers = 2;
  l.max_header_bytes = 20;
  ConnectionState s(l);
  EXPECT_EQ(s.take('L', "A\0001234\0"s).refused_now, Refusal::None);  // "A: 1234\r\n": 9
  EXPECT_EQ(s.take('L', "B\00012345\0"s).refused_now, Refusal::None);  // 10 more: 19
  EXPECT_EQ(s.take('L', "C\0\0"s).refused_now, Refusal::TooManyHeaders);
  s.end_message();
  EXPECT_EQ(s.take('L', "A\00012345678901234567\0"s).refused_now, Refusal::HeadersTooBig);  // 23
}

}  // namespace
}  // namespace mailhook::policyd::milter
