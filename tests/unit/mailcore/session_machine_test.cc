// SessionMachine: command order, limits, events and the Reset event.
#include "mailcore/session/session_machine.h"

#include <gtest/gtest.h>

using namespace mailhook;
using namespace mailhook::session;

namespace {

SessionMachine machine(EventSet listened = EventSet::all()) {
  return SessionMachine("mx.example", Limits{1000, 2}, listened);
}

// Runs a command with its default reply as the final one.
Step run(SessionMachine& m, std::string_view line, std::optional<SessionEvent>* reset = nullptr) {
  Step s = m.on_command(line, "T1");
  auto r = m.commit(s, s.default_reply);
  if (reset) *reset = std::move(r);
  return s;
}

}  // namespace

TEST(SessionMachine, MailBeforeHeloIsOutOfSequence) {
  auto m = machine();
  EXPECT_EQ(run(m, "MAIL FROM:<a@b.example>").default_reply.summary(), "503 5.5.1 Bad sequence of commands");
}

TEST(SessionMachine, RcptBeforeMailAndDataBeforeRcptAreRefused) {
  auto m = machine();
  run(m, "EHLO c.example");
  EXPECT_EQ(run(m, "RCPT TO:<a@b.example>").default_reply.code, 503);
  EXPECT_EQ(run(m, "DATA").default_reply.code, 503);
  run(m, "MAIL FROM:<a@b.example>");
  EXPECT_EQ(run(m, "DATA").default_reply.code, 554);
  EXPECT_EQ(run(m, "MAIL FROM:<a@b.example>").default_reply.code, 503);  // nested MAIL
}

TEST(SessionMachine, TooManyRecipientsGets452AtTheEdge) {
  auto m = machine();
  run(m, "EHLO c.example");
  run(m, "MAIL FROM:<a@b.example>");
  EXPECT_EQ(run(m, "RCPT TO:<1@b.example>").default_reply.code, 250);
  EXPECT_EQ(run(m, "RCPT TO:<2@b.example>").default_reply.code, 250);
  Step third = run(m, "RCPT TO:<3@b.example>");
  EXPECT_EQ(third.default_reply.summary(), "452 4.5.3 Too many recipients");
  EXPECT_FALSE(third.policy_may_decide);
  EXPECT_EQ(m.recipients().size(), 2u);
}

TEST(SessionMachine, DeclaredSizeOverTheLimitGets552) {
  auto m = machine();
  run(m, "EHLO c.example");
  EXPECT_EQ(run(m, "MAIL FROM:<a@b.example> SIZE=1001").default_reply.summary(),
            "552 5.3.4 Message size exceeds fixed limit");
  EXPECT_EQ(run(m, "MAIL FROM:<a@b.example> SIZE=1000").default_reply.code, 250);
}

TEST(SessionMachine, EhloAdvertisesTheExtensions) {
  auto m = machine();
  const std::string wire = run(m, "EHLO c.example").default_reply.wire();
  for (const char* ext : {"PIPELINING", "SIZE 1000", "8BITMIME", "ENHANCEDSTATUSCODES"}) {
    EXPECT_NE(wire.find(ext), std::string::npos) << ext;
  }
}

TEST(SessionMachine, EventsCarryInputAndTransactionId) {
  auto m = machine();
  run(m, "EHLO c.example");
  Step mail = m.on_command("MAIL FROM:<a@b.example>", "T9");
  ASSERT_TRUE(mail.event);
  EXPECT_EQ(mail.event->kind, EventKind::Mail);
  EXPECT_EQ(mail.event->transaction_id, "T9");
  EXPECT_EQ(mail.event->input, "MAIL FROM:<a@b.example>");
  EXPECT_TRUE(mail.event->wants_reply);
  m.commit(mail, mail.default_reply);
  Step rcpt = m.on_command("RCPT TO:<r@b.example>", "T10");
  EXPECT_EQ(rcpt.event->transaction_id, "T9");
  EXPECT_EQ(rcpt.event->address, "r@b.example");
}

TEST(SessionMachine, NoEventForKindsNobodyListensTo) {
  EventSet only_rcpt;
  only_rcpt.add(EventKind::Rcpt);
  auto m = machine(only_rcpt);
  EXPECT_FALSE(run(m, "EHLO c.example").event);
  EXPECT_FALSE(run(m, "MAIL FROM:<a@b.example>").event);
  EXPECT_TRUE(m.on_command("RCPT TO:<r@b.example>", "x").event);
}

TEST(SessionMachine, RefusedMailStartsNoTransaction) {
  auto m = machine();
  run(m, "EHLO c.example");
  Step mail = m.on_command("MAIL FROM:<a@b.example>", "T1");
  m.commit(mail, Reply{550, "5.7.1", {"no"}});
  EXPECT_TRUE(m.transaction_id().empty());
  EXPECT_EQ(run(m, "RCPT TO:<r@b.example>").default_reply.code, 503);
}

TEST(SessionMachine, RsetAndEhloEmitResetAndEndTheTransaction) {
  auto m = machine();
  run(m, "EHLO c.example");
  run(m, "MAIL FROM:<a@b.example>");
  std::optional<SessionEvent> reset;
  run(m, "RSET", &reset);
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->kind, EventKind::Reset);
  EXPECT_FALSE(reset->wants_reply);
  EXPECT_TRUE(m.transaction_id().empty());
  run(m, "EHLO again.example", &reset);
  EXPECT_TRUE(reset);
}

TEST(SessionMachine, UnknownCommandDefaultsTo502) {
  auto m = machine();
  Step s = run(m, "WIBBLE");
  EXPECT_EQ(s.default_reply.summary(), "502 5.5.2 Error: command not recognized");
  ASSERT_TRUE(s.event);
  EXPECT_EQ(s.event->kind, EventKind::Unknown);
}

// Issue 19 finding 12: ENVID and ORCPT went on to the smart host unchecked.
TEST(SessionMachine, MalformedEnvidIsRefusedWith501AndNoEvent) {
  auto m = machine();
  run(m, "EHLO c.example");
  Step s = run(m, "MAIL FROM:<a@b.example> ENVID=" + std::string(101, 'x'));
  EXPECT_EQ(s.default_reply.code, 501);
  EXPECT_EQ(s.default_reply.enhanced, "5.5.4");
  EXPECT_FALSE(s.event);
  EXPECT_EQ(run(m, "MAIL FROM:<a@b.example> ENVID=a+zz").default_reply.code, 501);
  EXPECT_EQ(run(m, "MAIL FROM:<a@b.example> ENVID=" + std::string(100, 'x')).default_reply.code, 250);
}

TEST(SessionMachine, MalformedOrcptIsRefusedWith501) {
  auto m = machine();
  run(m, "EHLO c.example");
  run(m, "MAIL FROM:<a@b.example>");
  EXPECT_EQ(run(m, "RCPT TO:<c@d.example> ORCPT=rfc822;c@d.example").default_reply.code, 250);
  EXPECT_EQ(run(m, "RCPT TO:<c@d.example> ORCPT=rfc822;" + std::string(494, 'x')).default_reply.code, 501);
  EXPECT_EQ(run(m, "RCPT TO:<c@d.example> ORCPT=c@d.example").default_reply.summary().substr(0, 9), "501 5.5.4");
}

// The logs name sender and recipients even when no script listens to MAIL
// or RCPT (docs/logging.md): later events carry them.
TEST(SessionMachine, EventsCarryTheEnvelopeForTheLogs) {
  EventSet listened;
  listened.add(EventKind::Rcpt);
  listened.add(EventKind::Data);
  auto m = machine(listened);
  run(m, "EHLO c.example");
  EXPECT_FALSE(run(m, "MAIL FROM:<a@b.example>").event);  // MAIL is not sent
  const Step rcpt = run(m, "RCPT TO:<r1@b.example>");
  ASSERT_TRUE(rcpt.event);
  EXPECT_EQ(rcpt.event->sender, "a@b.example");
  EXPECT_TRUE(rcpt.event->recipients.empty());
  run(m, "RCPT TO:<r2@b.example>");
  const Step data = run(m, "DATA");
  ASSERT_TRUE(data.event);
  EXPECT_EQ(data.event->recipients, (std::vector<std::string>{"r1@b.example", "r2@b.example"}));
  EXPECT_EQ(m.end_of_message_event(10).recipients.size(), 2u);
  const Step third = run(m, "RCPT TO:<r3@b.example>");  // past Limits{…, 2}
  EXPECT_EQ(third.limit, "--max-recipients");
}
