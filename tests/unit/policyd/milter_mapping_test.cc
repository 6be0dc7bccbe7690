// policyd/milter/milter_mapping: negotiation from capabilities, replies,
// envelope arguments and header bytes, without an MTA.
#include "policyd/milter/milter_mapping.h"

#include <gtest/gtest.h>

namespace mailhook::policyd::milter {
namespace {

constexpr unsigned long kAllActions = 0x1FF, kAllSteps = 0x1FFFFF;

TEST(MilterMapping, NegotiatesOnlyWhatTheScriptsUse) {
  Capabilities rcpt_only;
  rcpt_only.events.add(EventKind::Rcpt);
  const Negotiation n = negotiate(rcpt_only, kAllActions, kAllSteps);
  using namespace flag;
  for (unsigned long f : {kNrConn, kNrHelo, kNrMail, kNoData, kNoUnknown, kNoHdrs, kNoEoh, kNoBody, kSkip}) {
    EXPECT_TRUE(n.protocol & f) << std::hex << f;
  }
  // HELO is never negotiated away: its name is client.helo in later hooks.
  EXPECT_FALSE(n.protocol & kNoHelo);
  EXPECT_FALSE(n.protocol & kNoRcpt);
  EXPECT_FALSE(n.protocol & kNrRcpt);

  Capabilities content;
  content.connect_hook = true;
  content.wants_message = true;
  content.events.add(EventKind::MessageChunk);
  content.events.add(EventKind::EndOfMessage);
  const Negotiation m = negotiate(content, kAllActions, kAllSteps);
  EXPECT_FALSE(m.protocol & (kNrConn | kNoHdrs | kNoBody | kSkip));
  EXPECT_TRUE(m.protocol & kNrHdr);
  EXPECT_TRUE(m.protocol & kNrBody);
  // Never more than the MTA offers.
  EXPECT_EQ(negotiate(rcpt_only, kAddHdrs, kNoData).protocol, kNoData);
  EXPECT_EQ(negotiate(rcpt_only, kAddHdrs, kNoData).actions, kAddHdrs);
  EXPECT_EQ(negotiate(rcpt_only, kAddHdrs, kNoHelo | kNrHelo).protocol, kNrHelo);
}

TEST(MilterMapping, HeloOrEhlo) {
  Capabilities c;
  c.events.add(EventKind::Helo);
  EXPECT_EQ(helo_kind(c), EventKind::Helo);
  c.events.add(EventKind::Ehlo);
  EXPECT_EQ(helo_kind(c), EventKind::Ehlo);
}

TEST(MilterMapping, RepliesKeepCodeEnhancedCodeAndTextWithPercentEscaped) {
  EXPECT_EQ(milter_reply(Decision::proceed(1)).status, Status::Continue);
  EXPECT_EQ(milter_reply(Decision::respond(1, Reply{250, "2.0.0", {"ok"}})).status, Status::Continue);
  const MilterReply r = milter_reply(Decision::respond(1, Reply{550, "5.7.1", {"100% spam", "see x"}}));
  EXPECT_EQ(r.status, Status::Reject);
  EXPECT_EQ(r.code, "550");
  EXPECT_EQ(r.enhanced, "5.7.1");
  EXPECT_EQ(r.lines, (std::vector<std::string>{"100%% spam", "see x"}));
  EXPECT_EQ(milter_reply(Decision::respond(1, Reply{421, "4.7.0", {"bye"}})).status, Status::Tempfail);
  Reply many{451, "", {}};
  for (int i = 0; i < 40; ++i) many.lines.push_back("line");
  EXPECT_EQ(milter_reply(Decision::respond(1, many)).lines.size(), 32u);
}

TEST(MilterMapping, EnvelopeArguments) {
  std::string address;
  std::vector<Parameter> params;
  parse_envelope_args({"<a@example.com>", "size=100", "BODY=8BITMIME", "SMTPUTF8"}, address, params);
  EXPECT_EQ(address, "a@example.com");
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(params[0].name, "SIZE");
  EXPECT_EQ(params[0].value, "100");
  EXPECT_EQ(params[2].name, "SMTPUTF8");
  EXPECT_EQ(params[2].value, "");
  parse_envelope_args({"<>"}, address, params);
  EXPECT_EQ(address, "");
}

TEST(MilterMapping, HeaderBytesAndValues) {
  EXPECT_EQ(header_bytes("Subject", "hi"), "Subject: hi\r\n");
  EXPECT_EQ(header_bytes("To", "a,\n\tb"), "To: a,\r\n\tb\r\n");
  EXPECT_EQ(milter_header_value("a,\r\n\tb"), "a,\n\tb");
}

}  // namespace
}  // namespace mailhook::policyd::milter
