// The refusal line both daemons write (issue 20, docs/logging.md): one set
// of keys, every client value one token, the full reply last and quoted.
#include "mailcore/telemetry/decision_log.h"

#include <gtest/gtest.h>

using namespace mailhook;

TEST(DecisionLog, NamesEveryFieldPostfixStyle) {
  const std::vector<std::string> to{"no@example.com"};
  log::DecisionFields f{.queue_id = "Q1", .session = "S1", .client_host = "", .client_address = "192.0.2.7",
                        .helo = "client.example", .from = "a@example.org", .to = to, .hook = "rcpt",
                        .script = "policy.lua"};
  EXPECT_EQ(log::decision_line("reject", f, Reply{550, "5.7.1", {"no such user"}}),
            "reject: queue_id=Q1 session=S1 client=unknown[192.0.2.7] helo=client.example from=<a@example.org> "
            "to=<no@example.com> hook=rcpt script=policy.lua reply=\"550 5.7.1 no such user\"");
}

TEST(DecisionLog, MilterModeAddsTheMtaQueueIdAndLimitsNameTheLimit) {
  log::DecisionFields f{.session = "S", .mta_queue_id = "4XyZ1", .milter = true, .client_host = "mx.example",
                        .client_address = "::1", .from = "", .hook = "dot", .script = "limit",
                        .limit = "--milter-max-headers"};
  EXPECT_EQ(log::decision_line("reject", f, Reply{552, "5.3.4", {"too many header fields"}}),
            "reject: queue_id=- session=S mta_queue_id=4XyZ1 client=mx.example[::1] helo=- from=<> to=- hook=dot "
            "script=limit limit=--milter-max-headers reply=\"552 5.3.4 too many header fields\"");
}

TEST(DecisionLog, ClientBytesCannotForgeFieldsOrLines) {
  const std::vector<std::string> to{"x@y hook=accept", "b\nreject: fake"};
  log::DecisionFields f{.client_host = "evil host", .client_address = "1.2.3.4", .helo = "h\r\nx=y",
                        .from = "a\"b", .to = to};
  const std::string line =
      log::decision_line("would_reject", f, Reply{451, "", {"first \"quoted\" \\", "second\r\nline"}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.find('\r'), std::string::npos);
  EXPECT_NE(line.find("client=evil\\x20host[1.2.3.4]"), std::string::npos) << line;
  EXPECT_NE(line.find("helo=h\\x0D\\x0Ax=y"), std::string::npos) << line;
  EXPECT_NE(line.find("from=<a\\x22b>"), std::string::npos) << line;
  EXPECT_NE(line.find("to=<x@y\\x20hook=accept>,<b\\x0Areject:\\x20fake>"), std::string::npos) << line;
  // The reply: a quote is \" and a backslash \\, line breaks \n (or \r).
  EXPECT_NE(line.find("reply=\"451 first \\\"quoted\\\" \\\\\\nsecond\\r\\nline\""), std::string::npos) << line;
}

TEST(DecisionLog, LongRecipientListsAreCut) {
  std::vector<std::string> to(60, "r@x");
  EXPECT_EQ(log::recipient_list(std::span<const std::string>(to).first(2)), "<r@x>,<r@x>");
  const std::string all = log::recipient_list(to, 3);
  EXPECT_EQ(all, "<r@x>,<r@x>,<r@x>,...(+57)");
}
