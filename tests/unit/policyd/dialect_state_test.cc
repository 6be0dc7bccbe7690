// The dialect adapters through the real runtime: client.params (the
// ESMTP parameters the front parsed, which the adapters read instead of
// re-parsing client.input), and per-session adapter state that the
// runtime frees when a session ends, even one cut off mid-message.
#include "tests/unit/policyd/runtime_harness.h"

using namespace mailhook;
using namespace mailhook::policyd;
using namespace mailhook::policyd::testing;

namespace {

class DialectTest : public RuntimeTest {
 protected:
  // A MAIL or RCPT event with parameters, as the front sends it.
  static Decision send_with(Client& c, EventKind kind, std::string address, std::vector<Parameter> params,
                            std::string input) {
    SessionEvent e;
    e.seq = ++c.seq;
    e.kind = kind;
    e.wants_reply = true;
    e.address = std::move(address);
    e.parameters = std::move(params);
    e.input = std::move(input);
    e.transaction_id = c.transaction;
    c.session->post(std::move(e));
    return next_decision(*c.observer);
  }

  // Lua's heap (KiB) after a full collection, read by the probe script.
  long heap_kib() {
    Client probe = connect();
    Decision d = probe.send(EventKind::Noop);
    probe.session->close();
    EXPECT_EQ(d.reply.code, 250) << text(d);
    return d.reply.lines.empty() ? -1 : std::stol(d.reply.lines.front());
  }

  // One session that leaves adapter state in both tables: a transaction
  // with a header line, then the transport is gone before the dot (no
  // hook.close of its own: the runtime ends it).
  void session_cut_mid_message(int i) {
    Client c = connect("192.0.2." + std::to_string(1 + i % 200));
    c.send(EventKind::Ehlo, "client" + std::to_string(i) + ".test");
    c.transaction = "T" + std::to_string(i);
    send_with(c, EventKind::Mail, "s" + std::to_string(i) + "@a.test", {{"SIZE", "100"}},
              "MAIL FROM:<s@a.test> SIZE=100");
    send_with(c, EventKind::Rcpt, "r@b.test", {}, "RCPT TO:<r@b.test>");
    c.send(EventKind::Data);
    c.notify(EventKind::MessageChunk, "Subject: s" + std::to_string(i) + "\r\nX-Pad: " + std::string(200, 'x') +
                                          "\r\n\r\nbody\r\n");
    c.session->close();
  }

  // Loads `adapter` then the probe, runs `n` sessions after a warm-up, and
  // returns the heap growth in KiB.
  long growth_after_sessions(const std::string& adapter, int n) {
    const auto probe = write_script("probe.lua", R"(
      function hook.noop()
        collectgarbage("collect")
        collectgarbage("collect")
        return "250 " .. math.floor(collectgarbage("count")) .. "\r\n"
      end)");
    start({write_script("adapter.lua", adapter), probe});
    for (int i = 0; i < 50; ++i) session_cut_mid_message(i);
    const long before = heap_kib();
    for (int i = 0; i < n; ++i) session_cut_mid_message(i);
    const long after = heap_kib();
    std::printf("heap %ld KiB before, %ld KiB after %d sessions\n", before, after, n);
    return after - before;
  }
};

// client.params: keywords upper case in the order sent (array part),
// values as strings, a keyword without a value true; a fresh table per
// read; nil outside MAIL and RCPT.
TEST_F(DialectTest, ClientParamsAreTheParsedEsmtpParameters) {
  load(R"(
    local function show()
      local p = client.params
      local out = {}
      for i, name in ipairs(p) do out[i] = name .. "=" .. tostring(p[name]) .. ":" .. type(p[name]) end
      p.SIZE = "changed"  -- the script's own copy
      return "250 " .. #p .. " " .. table.concat(out, ",") .. " again=" .. tostring(client.params.SIZE) .. "\r\n"
    end
    function hook.mail() return show() end
    function hook.rcpt() return show() end
    function hook.ehlo() return "250 " .. tostring(client.params) .. "\r\n" end
  )");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Ehlo, "c.test")), "250 nil");
  c.transaction = "T1";
  EXPECT_EQ(text(send_with(c, EventKind::Mail, "a@b.test", {{"SIZE", "100"}, {"BODY", "8BITMIME"}, {"SMTPUTF8", ""}},
                           "MAIL FROM:<a@b.test> size=100 BODY=8BITMIME SMTPUTF8")),
            "250 3 SIZE=100:string,BODY=8BITMIME:string,SMTPUTF8=true:boolean again=100");
  EXPECT_EQ(text(send_with(c, EventKind::Rcpt, "r@b.test", {{"NOTIFY", "NEVER"}}, "RCPT TO:<r@b.test> NOTIFY=NEVER")),
            "250 1 NOTIFY=NEVER:string again=nil");
  EXPECT_EQ(text(send_with(c, EventKind::Rcpt, "s@b.test", {}, "RCPT TO:<s@b.test>")), "250 0  again=nil");
}

// The adapters take the parameters from client.params, not from the raw
// line: an input that says otherwise changes nothing.
TEST_F(DialectTest, AdaptersReadTheParsedParametersNotTheRawLine) {
  load(R"(
    function smtp.do_mail(sender, params) return 250, sender .. " " .. table.concat(params, ",") end
  )");
  Client c = connect();
  c.transaction = "T1";
  EXPECT_EQ(text(send_with(c, EventKind::Mail, "a@b.test", {{"SIZE", "10"}, {"SMTPUTF8", ""}},
                           "MAIL FROM:<a@b.test> RAW=ignored")),
            "250 a@b.test SIZE=10,SMTPUTF8");
}

TEST_F(DialectTest, Vpop3GetsParametersAndCommandDataFromTheParse) {
  load(R"(
    function DoMAILFROM(data, mailfrom, params, spf, auth)
      return params, "250 " .. data .. " size=" .. tostring(params.SIZE) .. " utf8=[" .. tostring(params.SMTPUTF8) .. "]"
    end
  )");
  Client c = connect();
  c.transaction = "T1";
  EXPECT_EQ(text(send_with(c, EventKind::Mail, "a@b.test", {{"SIZE", "10"}, {"SMTPUTF8", ""}},
                           "MAIL FROM:<a@b.test> RAW=ignored")),
            "250 <a@b.test> SIZE=10 SMTPUTF8 size=10 utf8=[]");
}

// Per-session adapter state lives in the runtime's session/transaction
// tables: 2,000 sessions cut off mid-message leave the heap where it was.
// A leak of one entry per session (~0.3 KiB of headers each, a whole
// script instance for vpop3) would be hundreds of KiB.
constexpr int kSessions = 2000;
constexpr long kBoundKib = 96;

TEST_F(DialectTest, SmtpfStateIsFreedWithTheSession) {
  const long grown = growth_after_sessions(R"(
    function smtp.do_headers(headers) return 0 end
    function smtp.do_mail(sender, params) return 0 end
  )", kSessions);
  EXPECT_LT(grown, kBoundKib);
}

TEST_F(DialectTest, QpsmtpdStateIsFreedWithTheSession) {
  const long grown = growth_after_sessions(R"(
    function hook_mail(self, transaction, sender, params)
      self:connection():notes("pad", string.rep("x", 300) .. tostring(sender))
      transaction:notes("size", params.size)
      return DECLINED
    end
    function hook_rcpt(self, transaction, rcpt) return OK end
  )", kSessions);
  EXPECT_LT(grown, kBoundKib);
}

TEST_F(DialectTest, Vpop3InstanceIsFreedWithTheSession) {
  const long grown = growth_after_sessions(R"(
    Seen = {}
    function DoMAILFROM(data, mailfrom, params) Seen[#Seen + 1] = string.rep("x", 300) .. mailfrom return params, "" end
  )", kSessions);
  EXPECT_LT(grown, kBoundKib);
}

}  // namespace
