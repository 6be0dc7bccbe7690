// The smtpe Lua API (seed 000) hook by hook and variable by variable:
// each script echoes what it saw into its reply.
#include "tests/unit/policyd/runtime_harness.h"

using namespace mailhook;
using namespace mailhook::policyd;
using namespace mailhook::policyd::testing;

namespace {
// A hook that replies with the values of the client.* variables it sees.
const char* kEcho = R"(
local function v(x) if x == nil then return "nil" end return tostring(x) end
local function facts(name)
  return "250 " .. name .. " addr=" .. v(client.address) .. " port=" .. v(client.port) ..
         " host=" .. v(client.host) .. " log=" .. v(client.id_log) .. " trans=" .. v(client.id_trans) ..
         " file=" .. (client.msg_file and "set" or "nil") .. " input=" .. v(client.input) ..
         " pipe=" .. v(client.is_pipelining) .. "\r\n"
end
function hook.helo(a) return facts("helo:" .. a) end
function hook.ehlo(a) return facts("ehlo:" .. a) end
function hook.auth(a) return facts("auth:" .. a) end
function hook.mail(s) return facts("mail:" .. s) end
function hook.rcpt(r) return facts("rcpt:" .. r) end
function hook.data() return "354 " .. facts("data"):sub(5) end
function hook.rset() return facts("rset") end
function hook.noop() return facts("noop") end
function hook.help() return "214 help\r\n" end
function hook.quit() return "221 2.0.0 quit " .. v(client.id_trans) .. "\r\n" end
function hook.unknown(line) return "502 5.5.2 unknown:" .. line .. "\r\n" end
function hook.xclient() return "550 5.7.0 xclient " .. v(client.input) .. "\r\n" end
)";
}  // namespace

TEST_F(RuntimeTest, CommandHooksGetTheirArgumentsAndInput) {
  load(kEcho);
  Client c = connect("192.0.2.5");
  EXPECT_EQ(text(c.send(EventKind::Helo, "h.test")),
            "250 helo:h.test addr=192.0.2.5 port=4567 host=client.test log=S1 trans=nil file=nil input=INPUT h.test "
            "pipe=true");
  EXPECT_EQ(c.send(EventKind::Ehlo, "e.test").reply.lines[0].substr(0, 11), "ehlo:e.test");
  EXPECT_EQ(c.send(EventKind::Auth, "PLAIN xyz").reply.lines[0].substr(0, 15), "auth:PLAIN xyz ");
  EXPECT_EQ(text(c.send(EventKind::Unknown, "WIBBLE")), "502 5.5.2 unknown:INPUT WIBBLE");
  EXPECT_EQ(text(c.send(EventKind::Help)), "214 help");
  EXPECT_EQ(text(c.send(EventKind::Xclient)), "550 5.7.0 xclient nil");  // input is not for XCLIENT (seed)
}

TEST_F(RuntimeTest, TransactionVariablesLiveFromMailUntilReset) {
  load(kEcho);
  Client c = connect();
  c.transaction = "T7";
  const std::string mail = text(c.send(EventKind::Mail, "", "a@b.test"));
  EXPECT_NE(mail.find("mail:a@b.test"), std::string::npos);
  EXPECT_NE(mail.find("trans=T7 file=set"), std::string::npos) << mail;
  EXPECT_NE(text(c.send(EventKind::Rcpt, "", "r@b.test")).find("trans=T7"), std::string::npos);
  const Decision data = c.send(EventKind::Data);
  EXPECT_EQ(data.reply.code, 354);
  EXPECT_NE(data.reply.lines[0].find("trans=T7"), std::string::npos);
  c.transaction.clear();  // RSET ended it in the front
  const std::string rset = text(c.send(EventKind::Rset));
  EXPECT_NE(rset.find("trans=nil file=nil input=INPUT "), std::string::npos) << rset;
  EXPECT_NE(text(c.send(EventKind::Noop)).find("input=nil"), std::string::npos);  // NOOP is not in the seed's list
}

TEST_F(RuntimeTest, ContentHooksSeeHeadersFoldedBodyLinesAndChunks) {
  load(R"(
    seen = {}
    function hook.content(chunk) seen[#seen + 1] = "C" .. #chunk end
    function hook.header(line) seen[#seen + 1] = "H[" .. line:gsub("\r\n", "|") .. "]" end
    function hook.eoh() seen[#seen + 1] = "EOH" end
    function hook.body(line) seen[#seen + 1] = "B[" .. line .. "]" end
    function hook.dot(path) return "550 5.7.1 " .. table.concat(seen, " ") .. "\r\n" end
  )");
  Client c = connect();
  c.transaction = "T1";
  c.notify(EventKind::MessageChunk, "Subject: a\r\n b\r\nFrom: x");  // split inside a header
  c.notify(EventKind::MessageChunk, "@y\r\n\r\nline1\r\nline2\r\n");
  EXPECT_EQ(text(c.send(EventKind::EndOfMessage)),
            "550 5.7.1 C16 C27 H[Subject: a| b] H[From: x@y] EOH B[line1] B[line2]");
}

TEST_F(RuntimeTest, ResetErrorAndCloseHooksRun) {
  load(R"(
    log = {}
    function hook.reset() log[#log + 1] = "reset" end
    function hook.error(n, t) log[#log + 1] = "error:" .. n .. ":" .. t end
    function hook.close() log[#log + 1] = "close" end
    function hook.noop() return "250 " .. table.concat(log, ",") .. "\r\n" end
  )");
  Client a = connect();
  a.notify(EventKind::Reset);
  SessionEvent e;
  e.seq = ++a.seq;
  e.kind = EventKind::Error;
  e.error_code = 104;
  e.error_text = "Connection reset by peer";
  a.session->post(e);
  a.notify(EventKind::Close);
  Client b = connect();  // same worker, shared globals
  EXPECT_EQ(text(b.send(EventKind::Noop)), "250 reset,error:104:Connection reset by peer,close");
}

TEST_F(RuntimeTest, DotReplyOrForwardDecides) {
  load(R"(function hook.forward(path) return "451 4.4.1 forward " .. (path == client.msg_file and "ok" or "?") .. "\r\n" end)");
  Client c = connect();
  c.transaction = "T1";
  EXPECT_EQ(text(c.send(EventKind::EndOfMessage)), "451 4.4.1 forward ok");
}

TEST_F(RuntimeTest, SmtpeVariables) {
  load(R"(function hook.noop()
            return "250 " .. smtpe.host .. " " .. smtpe.bin_version .. " " .. smtpe.api_version ..
                   " " .. (smtpe.copyright ~= nil and "c" or "-") .. "\r\n" end)");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 mx.test mailhook/" MAILHOOK_VERSION " 1.0 c");
}

TEST_F(RuntimeTest, NetReverseIpV4AndV6WithAndWithoutSuffix) {
  load(R"(function hook.noop()
            local bad, err = net.reverseip("not an ip")
            return "250 " .. net.reverseip("192.0.2.1") .. " " .. net.reverseip("192.0.2.1", true) .. " " ..
                   net.reverseip("2001:db8::1") .. " " .. net.reverseip("2001:db8::1", true) .. " " ..
                   tostring(bad) .. " " .. err .. "\r\n" end)");
  EXPECT_EQ(text(connect().send(EventKind::Noop)),
            "250 1.2.0.192 1.2.0.192.in-addr.arpa "
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2 "
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa nil invalid address");
}

TEST_F(RuntimeTest, SyslogFunctionsAndConstantsInBothSpellings) {
  load(R"(function hook.noop()
            syslog.open("x", syslog.LOG_PID + syslog.LOG_NDELAY, syslog.LOG_MAIL)
            syslog.openlog("x", syslog.LOG_CONS, syslog.LOG_LOCAL7)
            syslog.log(syslog.LOG_NOTICE, "a"); syslog.syslog(syslog.LOG_WARNING, "b")
            syslog.error("c"); syslog.info("d"); syslog.debug("e")
            syslog.close(); syslog.closelog()
            local names = { "LOG_PID", "LOG_CONS", "LOG_ODELAY", "LOG_NDELAY", "LOG_NOWAIT", "LOG_PERROR",
              "LOG_KERN", "LOG_USER", "LOG_MAIL", "LOG_DAEMON", "LOG_AUTH", "LOG_SYSLOG", "LOG_LPR", "LOG_NEWS",
              "LOG_UUCP", "LOG_CRON", "LOG_AUTHPRIV", "LOG_FTP", "LOG_LOCAL0", "LOG_LOCAL1", "LOG_LOCAL2",
              "LOG_LOCAL3", "LOG_LOCAL4", "LOG_LOCAL5", "LOG_LOCAL6", "LOG_LOCAL7", "LOG_EMERG", "LOG_ALERT",
              "LOG_CRIT", "LOG_ERR", "LOG_WARNING", "LOG_NOTICE", "LOG_INFO", "LOG_DEBUG" }
            for _, n in ipairs(names) do if type(syslog[n]) ~= "number" then return "550 missing " .. n .. "\r\n" end end
            return "250 " .. syslog.LOG_ERR .. " " .. syslog.LOG_MAIL .. "\r\n" end)");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 3 16");
}

TEST_F(RuntimeTest, ClientIsReadOnlyAndGlobalsAreSharedPerWorker) {
  load(R"(count = 0
          function hook.noop() count = count + 1; return "250 " .. count .. "\r\n" end
          function hook.rset() client.address = "x" end)");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 1");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Noop)), "250 2");
  EXPECT_EQ(text(c.send(EventKind::Rset)), "CONTINUE");  // the write is an error
}

TEST_F(RuntimeTest, SandboxRemovesWhatWouldTakePolicydDown) {
  load(R"(function hook.noop()
            return "250 " .. tostring(os.exit) .. tostring(os.execute) .. tostring(io.popen) ..
                   tostring(debug.sethook) .. type(os.time) .. type(io.open) .. "\r\n" end)");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 nilnilnilnilfunctionfunction");
}
