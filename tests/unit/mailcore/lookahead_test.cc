// events_ahead (RFC 2920 look-ahead): the events it predicts are exactly
// those the machine gives when each command is accepted in turn, and it
// stops where a prediction cannot hold.
#include "mailcore/session/lookahead.h"
#include "mailcore/session/reply_rules.h"

#include <gtest/gtest.h>

using namespace mailhook;
using namespace mailhook::session;

namespace {

SessionMachine greeted(std::uint32_t max_recipients = 100) {
  SessionMachine m("mx.example", Limits{1000, max_recipients}, EventSet::all());
  Step s = m.on_command("EHLO c.example", "T1");
  m.commit(s, s.default_reply);
  return m;
}

std::vector<EventKind> kinds(const std::vector<SessionEvent>& events) {
  std::vector<EventKind> out;
  for (const SessionEvent& e : events) out.push_back(e.kind);
  return out;
}

}  // namespace

TEST(Lookahead, PredictsTheEventsOfAcceptedCommandsAndLeavesTheMachineAlone) {
  SessionMachine m = greeted();
  const std::string rest = "RCPT TO:<b1@x.example>\r\nRCPT TO:<b2@x.example> NOTIFY=NEVER\r\nDATA\r\nQUIT\r\n";
  Step mail = m.on_command("MAIL FROM:<a@s.example> SIZE=10", "T1");
  const std::vector<SessionEvent> ahead = events_ahead(m, mail, rest, 16, "T2");
  // The real run, one command at a time, each accepted.
  SessionMachine real = m;
  real.commit(mail, mail.default_reply);
  std::vector<SessionEvent> expected;
  for (const char* line : {"RCPT TO:<b1@x.example>", "RCPT TO:<b2@x.example> NOTIFY=NEVER", "DATA"}) {
    Step s = real.on_command(line, "T2");
    ASSERT_TRUE(s.event);
    s.event->speculative = true;
    expected.push_back(*s.event);
    real.commit(s, s.default_reply);
  }
  EXPECT_EQ(ahead, expected);  // every field, seq and recipients included; QUIT is not looked at
  EXPECT_EQ(m.state(), State::Greeted);  // the caller's machine did not move
  EXPECT_EQ(ahead.back().recipients, (std::vector<std::string>{"b1@x.example", "b2@x.example"}));
}

TEST(Lookahead, StopsAtCommandsItCannotPredict) {
  for (const char* stop : {"STARTTLS", "AUTH PLAIN", "XCLIENT NAME=x", "QUIT", "BDAT 10 LAST", "RSET", "NOOP",
                           "FOO bar", "RCPT TO:<bad", "MAIL FROM:<c@s.example>"}) {
    SessionMachine m = greeted();
    Step mail = m.on_command("MAIL FROM:<a@s.example>", "T1");
    const std::string rest = "RCPT TO:<b@x.example>\r\n" + std::string(stop) + "\r\nRCPT TO:<c@x.example>\r\n";
    EXPECT_EQ(kinds(events_ahead(m, mail, rest, 16, "T2")), std::vector<EventKind>{EventKind::Rcpt}) << stop;
  }
}

TEST(Lookahead, StopsAtDataAnIncompleteLineTheDepthAndARecipientLimit) {
  SessionMachine m = greeted(2);
  Step mail = m.on_command("MAIL FROM:<a@s.example>", "T1");
  EXPECT_EQ(kinds(events_ahead(m, mail, "RCPT TO:<b@x.example>\r\nDATA\r\nRCPT TO:<c@x.example>\r\n", 16, "T2")),
            (std::vector<EventKind>{EventKind::Rcpt, EventKind::Data}));
  EXPECT_EQ(events_ahead(m, mail, "RCPT TO:<b@x.example>", 16, "T2").size(), 0u);  // no line end yet
  EXPECT_EQ(events_ahead(m, mail, "RCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n", 1, "T2").size(), 1u);
  EXPECT_EQ(events_ahead(m, mail, "RCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n", 0, "T2").size(), 0u);
  // --max-recipients 2: the third RCPT's 452 is the machine's, not an accept.
  EXPECT_EQ(kinds(events_ahead(m, mail,
                               "RCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nRCPT TO:<d@x.example>\r\nDATA\r\n",
                               16, "T2")),
            (std::vector<EventKind>{EventKind::Rcpt, EventKind::Rcpt}));
}

TEST(Lookahead, NothingAheadOfARefusedOrNonTransactionCommand) {
  SessionMachine m = greeted();
  Step bad = m.on_command("MAIL FROM:<a@s.example> BOGUS=1", "T1");
  EXPECT_TRUE(events_ahead(m, bad, "RCPT TO:<b@x.example>\r\n", 16, "T2").empty());
  Step noop = m.on_command("NOOP", "T1");
  EXPECT_TRUE(events_ahead(m, noop, "MAIL FROM:<a@s.example>\r\n", 16, "T1").empty());
}

TEST(Lookahead, KeepsPredictionOnlyWhenTheReplyKeepsTheDefaultsClass) {
  SessionEvent rcpt;
  rcpt.kind = EventKind::Rcpt;
  rcpt.default_reply = Reply{250, "2.1.5", {"OK"}};
  EXPECT_TRUE(keeps_prediction(rcpt, Decision::proceed(1)));
  EXPECT_TRUE(keeps_prediction(rcpt, Decision::respond(1, Reply{250, "", {"fine by me"}})));
  EXPECT_TRUE(keeps_prediction(rcpt, Decision::respond(1, Reply{354, "", {"wrong class: default sent"}})));
  EXPECT_FALSE(keeps_prediction(rcpt, Decision::respond(1, Reply{550, "5.7.1", {"no"}})));
  EXPECT_FALSE(keeps_prediction(rcpt, Decision::respond(1, Reply{451, "", {"later"}})));
  EXPECT_FALSE(keeps_prediction(rcpt, Decision::respond(1, Reply{250, "", {"ok"}}, true)));  // disconnect
  Decision limits = Decision::proceed(1);
  limits.limits = SessionLimits{1000, 1, 0};
  EXPECT_FALSE(keeps_prediction(rcpt, limits));  // later RCPTs' defaults follow the new limits
  Decision changes = Decision::proceed(1);
  changes.changes.push_back(MessageChange{.kind = MessageChange::Kind::ChangeFrom, .value = "x@y.example"});
  EXPECT_FALSE(keeps_prediction(rcpt, changes));
  Decision skipped = Decision::proceed(1);
  skipped.skipped = true;
  EXPECT_FALSE(keeps_prediction(rcpt, skipped));
}
