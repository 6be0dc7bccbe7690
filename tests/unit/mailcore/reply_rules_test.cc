// The decision rules shared by the front and --test: which reply a
// decision, a limit and the session machine give the client.
#include "mailcore/session/reply_rules.h"

#include <gtest/gtest.h>

using namespace mailhook;
using namespace mailhook::session;

namespace {

SessionMachine machine() { return SessionMachine("mx.example", Limits{1000, 2}, EventSet::all()); }

Step greeted_step(SessionMachine& m, std::string_view line) {
  Step ehlo = m.on_command("EHLO c.example", "T1");
  m.commit(ehlo, ehlo.default_reply);
  return m.on_command(line, "T1");
}

const Reply kRefusal{550, "5.7.1", {"no thanks"}};

}  // namespace

TEST(ReplyRules, ContinueKeepsTheDefault) {
  const ChosenReply r = choose_reply(Decision::proceed(1), Reply{250, "2.1.0", {"Ok"}});
  EXPECT_EQ(r.reply.code, 250);
  EXPECT_FALSE(r.by_policy);
  EXPECT_FALSE(r.close);
}

TEST(ReplyRules, ValidPolicyReplyIsSentVerbatim) {
  const ChosenReply r = choose_reply(Decision::respond(1, kRefusal), Reply{250, "", {"Ok"}});
  EXPECT_EQ(r.reply, kRefusal);
  EXPECT_TRUE(r.by_policy);
  EXPECT_TRUE(r.invalid.empty());
}

TEST(ReplyRules, InvalidPolicyReplyFallsBackToTheDefaultAndSaysWhy) {
  const ChosenReply bad_class = choose_reply(Decision::respond(1, Reply{354, "", {"go"}}), Reply{250, "", {"Ok"}});
  EXPECT_EQ(bad_class.reply.code, 250);
  EXPECT_EQ(bad_class.invalid, "wrong class for the command");
  const ChosenReply bad_text =
      choose_reply(Decision::respond(1, Reply{550, "4.7.1", {"class mismatch"}}, true), Reply{250, "", {"Ok"}});
  EXPECT_EQ(bad_text.reply.code, 250);
  EXPECT_FALSE(bad_text.invalid.empty());
  EXPECT_FALSE(bad_text.close);  // an invalid reply's disconnect is dropped with it
}

TEST(ReplyRules, DataTakesOnly354OrARefusal) {
  EXPECT_EQ(choose_reply(Decision::respond(1, Reply{354, "", {"go ahead"}}), Reply{354, "", {"x"}}, true).reply.lines[0],
            "go ahead");
  EXPECT_FALSE(choose_reply(Decision::respond(1, Reply{250, "", {"Ok"}}), Reply{354, "", {"x"}}, true).invalid.empty());
  EXPECT_EQ(choose_reply(Decision::respond(1, kRefusal), Reply{354, "", {"x"}}, true).reply, kRefusal);
}

TEST(ReplyRules, Reply421AndDisconnectClose) {
  EXPECT_TRUE(choose_reply(Decision::respond(1, Reply{421, "4.7.0", {"bye"}}), Reply{250, "", {"Ok"}}).close);
  EXPECT_TRUE(choose_reply(Decision::respond(1, kRefusal, true), Reply{250, "", {"Ok"}}).close);
  Decision d = Decision::proceed(1);
  d.disconnect = true;
  EXPECT_TRUE(choose_reply(d, Reply{250, "", {"Ok"}}).close);
}

TEST(ReplyRules, RefusedRcptGivesTheScriptsReply) {
  auto m = machine();
  Step mail = greeted_step(m, "MAIL FROM:<a@b.example>");
  m.commit(mail, mail.default_reply);
  Step rcpt = m.on_command("RCPT TO:<x@y.example>", "T1");
  const Decision refused = Decision::respond(2, kRefusal);
  const ChosenReply r = command_reply(m, rcpt, &refused);
  EXPECT_EQ(r.reply, kRefusal);
  EXPECT_TRUE(r.by_policy);
  EXPECT_FALSE(r.close);
}

TEST(ReplyRules, MachinesFinalDefaultBeatsThePolicy) {
  auto m = machine();
  Step rcpt = greeted_step(m, "RCPT TO:<x@y.example>");  // no MAIL yet: 503, final
  ASSERT_FALSE(rcpt.policy_may_decide);
  const Decision ok = Decision::respond(1, Reply{250, "2.1.5", {"Ok"}});
  const ChosenReply r = command_reply(m, rcpt, &ok);
  EXPECT_EQ(r.reply.code, 503);
  EXPECT_FALSE(r.by_policy);
}

TEST(ReplyRules, LimitsFromThePolicyReachTheEhloReply) {
  auto m = machine();
  Step ehlo = m.on_command("EHLO c.example", "T1");
  Decision d = Decision::proceed(1);
  d.limits = SessionLimits{.max_message_size = 4242, .max_recipients = 7, .max_line_length = 0};
  const ChosenReply r = command_reply(m, ehlo, &d);
  EXPECT_EQ(m.limits().max_recipients, 7u);
  bool size_line = false;
  for (const std::string& l : r.reply.lines) size_line = size_line || l == "SIZE 4242";
  EXPECT_TRUE(size_line) << r.reply.summary();
}

TEST(ReplyRules, EhloKeywordsFromThePolicyReplaceOurs) {
  auto m = machine();
  Step ehlo = m.on_command("EHLO c.example", "T1");
  Decision d = Decision::proceed(1);
  d.ehlo_keywords = {"8BITMIME", "X-POLICY"};
  const ChosenReply r = command_reply(m, ehlo, &d);
  ASSERT_EQ(r.reply.lines.size(), 3u);
  EXPECT_EQ(r.reply.lines[1], "8BITMIME");
  EXPECT_EQ(r.reply.lines[2], "X-POLICY");
}

TEST(ReplyRules, QuitCloses) {
  auto m = machine();
  Step quit = m.on_command("QUIT", "T1");
  EXPECT_TRUE(command_reply(m, quit, nullptr).close);
}

TEST(ReplyRules, ConnectRefusalEndsTheSession) {
  const Reply greeting{220, "", {"mx.example ESMTP"}};
  EXPECT_FALSE(connect_reply(Decision::proceed(0), greeting).close);
  const ChosenReply refused = connect_reply(Decision::respond(0, kRefusal), greeting);
  EXPECT_TRUE(refused.close);
  EXPECT_EQ(refused.reply, kRefusal);
}

TEST(ReplyRules, PolicysTwoHundredIsTheFinalReplyOnlyOnceDelivered) {
  const Reply queued{250, "2.0.0", {"Ok: queued as T1"}};
  const Reply policy{250, "2.0.0", {"Thanks"}};
  EXPECT_EQ(message_reply(policy, queued), policy);
  EXPECT_EQ(message_reply(Reply{}, queued), queued);
  const Reply spool_failed{452, "4.3.1", {"Insufficient system storage"}};
  EXPECT_EQ(message_reply(policy, spool_failed), spool_failed);
}
