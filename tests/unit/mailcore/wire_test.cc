// Wire conversion: what goes into mailhook.v1 comes back out unchanged.
#include "mailcore/wire/convert.h"

#include <gtest/gtest.h>

using namespace mailhook;

TEST(Wire, EventRoundTripsEveryField) {
  SessionEvent e{.seq = 7, .kind = EventKind::Rcpt, .wants_reply = true, .input = "RCPT TO:<a@b>",
                 .argument = "TO:<a@b>", .address = "a@b", .parameters = {{"NOTIFY", "NEVER"}},
                 .chunk = std::string("x\0y", 3), .default_reply = Reply{250, "2.1.5", {"Ok"}},
                 .error_code = 5, .error_text = "EIO", .client = ClientFacts{.address = "192.0.2.1", .port = 25},
                 .transaction_id = "T1", .message_size = 99, .helo = "c.example", .sender = "s@x",
                 .recipients = {"r1@x", "r2@x"}};
  const SessionEvent copy = e;
  wire::v1::Event p;
  wire::to_proto(std::move(e), &p);
  SessionEvent back = wire::from_proto(std::move(p));
  EXPECT_EQ(back.seq, copy.seq);
  EXPECT_EQ(back.kind, copy.kind);
  EXPECT_EQ(back.input, copy.input);
  EXPECT_EQ(back.address, copy.address);
  EXPECT_EQ(back.parameters, copy.parameters);
  EXPECT_EQ(back.chunk, copy.chunk);
  EXPECT_EQ(back.default_reply, copy.default_reply);
  EXPECT_EQ(back.client, copy.client);
  EXPECT_EQ(back.transaction_id, copy.transaction_id);
  EXPECT_EQ(back.message_size, copy.message_size);
  EXPECT_EQ(back.helo, copy.helo);
  EXPECT_EQ(back.sender, copy.sender);
  EXPECT_EQ(back.recipients, copy.recipients);
}

TEST(Wire, DecisionRoundTripsChanges) {
  Decision d = Decision::respond(3, Reply{550, "5.7.1", {"a", "b"}}, true);
  d.script = "policy.lua";  // who decided, for the front's refusal line
  d.hook = "rcpt";
  d.changes = {{.kind = MessageChange::Kind::ChangeHeader, .name = "X", .index = 2, .erase = true},
               {.kind = MessageChange::Kind::AddRcpt, .name = "NOTIFY=NEVER", .value = "r@x"},
               {.kind = MessageChange::Kind::Discard}};
  wire::v1::Decision p;
  wire::to_proto(d, &p);
  Decision back = wire::from_proto(p);
  EXPECT_EQ(back.reply, d.reply);
  EXPECT_TRUE(back.disconnect);
  EXPECT_EQ(back.changes, d.changes);
  EXPECT_EQ(back.script, "policy.lua");
  EXPECT_EQ(back.hook, "rcpt");
}

TEST(Wire, CapabilitiesRoundTrip) {
  Capabilities c;
  c.events.add(EventKind::Helo);
  c.events.add(EventKind::EndOfMessage);
  c.wants_message = true;
  wire::v1::Capabilities p;
  wire::to_proto(c, &p);
  Capabilities back = wire::from_proto(p);
  EXPECT_EQ(back.events, c.events);
  EXPECT_TRUE(back.wants_message);
}
