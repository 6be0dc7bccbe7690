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

// policyd's transaction line ends with the sender authentication a script
// checked (issue 23); nothing when no check ran.
TEST(DecisionLog, AuthFieldsNameEachCheckThatRan) {
  EXPECT_EQ(log::auth_fields({}), "");
  log::AuthResults a;
  a.spf = log::AuthResults::Verdict{"pass", "example.org"};
  EXPECT_EQ(log::auth_fields(a), " spf=pass(example.org)");
  a.dkim.emplace();
  EXPECT_EQ(log::auth_fields(a), " spf=pass(example.org) dkim=none");  // verified, no signature
  a.dkim->push_back({"pass", "example.org"});
  a.dkim->push_back({"permerror", ""});  // a signature without d=
  a.dmarc = log::AuthResults::Dmarc{.result = "fail", .from_domain = "example.org", .policy = "reject",
                                    .disposition = "quarantine"};
  EXPECT_EQ(log::auth_fields(a),
            " spf=pass(example.org) dkim=pass(example.org),permerror dmarc=fail(example.org,p=reject,dis=quarantine)");
  a.spf.reset();
  a.dkim_cut = 3;
  a.dmarc = log::AuthResults::Dmarc{.result = "none", .from_domain = "example.org"};  // no record: no policy
  EXPECT_EQ(log::auth_fields(a), " dkim=pass(example.org),permerror,...(+3) dmarc=none(example.org)");
}

TEST(DecisionLog, AuthFieldsEscapeWhatTheMessageChose) {
  // d= and the From domain come from the message: neither a field, a line
  // nor another signature's result can be faked.
  log::AuthResults a;
  a.dkim = std::vector<log::AuthResults::Verdict>{{"fail", "x),pass(bank.example"}, {"fail", "a b\ndmarc=pass"}};
  a.dmarc = log::AuthResults::Dmarc{.result = "permerror", .from_domain = "bad,p=none"};
  EXPECT_EQ(log::auth_fields(a), " dkim=fail(x\\x29\\x2Cpass\\x28bank.example),fail(a\\x20b\\x0Admarc=pass)"
                                 " dmarc=permerror(bad\\x2Cp=none)");
}
