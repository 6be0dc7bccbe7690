// The policyd runtime through its public API: reply rules, chaining,
// failures that must not take policyd down, load errors, reload, message
// temp files and changes.
#include <fstream>

#include "tests/unit/policyd/runtime_harness.h"

using namespace mailhook;
using namespace mailhook::policyd;
using namespace mailhook::policyd::testing;

TEST_F(RuntimeTest, RcptHookRejectsWithScriptsReplyVerbatim) {
  load(R"(function hook.rcpt(r) return "550 5.1.1 <" .. r .. "> unknown\r\n" end)");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "x@y.test")), "550 5.1.1 <x@y.test> unknown");
}

TEST_F(RuntimeTest, NoReplyMeansContinue) {
  load("function hook.rcpt(r) end");
  EXPECT_EQ(text(connect().send(EventKind::Rcpt, "", "x@y")), "CONTINUE");
}

TEST_F(RuntimeTest, AcceptRefusalDisconnectsAndSeesIpAndPtr) {
  load(R"(function hook.accept(ip, ptr) return "554 5.7.1 no " .. ip .. " " .. ptr .. "\r\n" end)");
  Client c = connect("192.0.2.9");
  EXPECT_EQ(text(c.connect), "554 5.7.1 no 192.0.2.9 client.test");
  EXPECT_TRUE(c.connect.disconnect);
}

TEST_F(RuntimeTest, Reply421FromAnyHookDisconnects) {
  load(R"(function hook.helo(h) return "421 4.7.0 bye\r\n" end)");
  Decision d = connect().send(EventKind::Helo, "h.test");
  EXPECT_EQ(d.reply.code, 421);
  EXPECT_TRUE(d.disconnect);
}

TEST_F(RuntimeTest, MultiLineReplyKeepsEveryLine) {
  load(R"(function hook.help() return "214-a\r\n214 b\r\n" end)");
  Decision d = connect().send(EventKind::Help);
  EXPECT_EQ(d.reply.lines, (std::vector<std::string>{"a", "b"}));
}

TEST_F(RuntimeTest, MissingFinalCrlfIsAccepted) {
  load(R"(function hook.noop() return "250 2.0.0 fine" end)");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 2.0.0 fine");
}

TEST_F(RuntimeTest, MalformedReplyFallsBackToDefault) {
  load(R"(function hook.mail(s) return "hello there" end
          function hook.rcpt(r) return 42 end)");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Mail, "", "a@b")), "CONTINUE");
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "a@b")), "CONTINUE");
}

TEST_F(RuntimeTest, SmuggledLineEndNeverReachesTheDecision) {
  load(R"(function hook.rcpt(r) return "250 ok\r\nRCPT TO:<evil@x>\r\n" end
          function hook.mail(s) return "250 ok\nDATA" end)");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "a@b")), "CONTINUE");
  EXPECT_EQ(text(c.send(EventKind::Mail, "", "a@b")), "CONTINUE");
}

TEST_F(RuntimeTest, ScriptErrorFallsBackToDefaultAndTheSessionGoesOn) {
  load(R"(function hook.rcpt(r) error("boom") end
          function hook.noop() return "250 alive\r\n" end)");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "a@b")), "CONTINUE");
  EXPECT_EQ(text(c.send(EventKind::Noop)), "250 alive");
}

TEST_F(RuntimeTest, ChainedScriptsFirstReplyWinsAndLaterScriptsAreNotCalled) {
  auto first = write_script("first.lua", R"(
    function hook.rcpt(r) if r == "a@x" then return "550 5.1.1 first\r\n" end end)");
  auto second = write_script("second.lua", R"(
    calls = 0
    function hook.rcpt(r) calls = calls + 1; return "551 5.1.1 second " .. calls .. "\r\n" end)");
  start({first, second});
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "a@x")), "550 5.1.1 first");
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "b@x")), "551 5.1.1 second 1");  // second ran once only
}

TEST_F(RuntimeTest, HookTimeoutGives451AndTheWorkerGoesOn) {
  config_.hook_timeout = std::chrono::milliseconds(100);
  load(R"(function hook.rcpt(r) while true do end end
          function hook.noop() return "250 alive\r\n" end)");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "a@b")), "451 4.3.0 Policy temporarily unavailable, try again later");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 alive");
}

TEST_F(RuntimeTest, PcallCannotSwallowTheTimeout) {
  config_.hook_timeout = std::chrono::milliseconds(100);
  load(R"(function hook.rcpt(r)
            while true do pcall(function() while true do end end) end
          end)");
  EXPECT_EQ(connect().send(EventKind::Rcpt, "", "a@b").reply.code, 451);
}

TEST_F(RuntimeTest, MemoryCapFailsOnlyThatHook) {
  config_.lua_memory_bytes = 4u << 20;
  load(R"(function hook.rcpt(r) local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 100) .. i end end
          function hook.noop() return "250 alive\r\n" end)");
  Client c = connect();
  EXPECT_EQ(c.send(EventKind::Rcpt, "", "a@b").reply.code, 451);
  EXPECT_EQ(text(c.send(EventKind::Noop)), "250 alive");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 alive");
}

TEST_F(RuntimeTest, CheckNamesFileAndLineOfASyntaxError) {
  config_.scripts = {write_script("bad.lua", "function hook.helo(h)\n  return 1 +\nend\n")};
  const std::string e = Runtime::check(config_);
  EXPECT_NE(e.find("bad.lua:3:"), std::string::npos) << e;
}

TEST_F(RuntimeTest, CreateFailsOnAMissingScriptOrARuntimeErrorAtLoad) {
  std::string error;
  config_.scripts = {dir_ / "missing.lua"};
  EXPECT_FALSE(Runtime::create(config_, error));
  EXPECT_NE(error.find("missing.lua"), std::string::npos) << error;
  config_.scripts = {write_script("boom.lua", "local x = 1\nerror('at load')\n")};
  EXPECT_FALSE(Runtime::create(config_, error));
  EXPECT_NE(error.find("boom.lua:2:"), std::string::npos) << error;
}

// The runtime opens exactly the modules it is given (lua_api's list,
// lua_modules()), in order, and names none of its own.
TEST_F(RuntimeTest, EveryModuleOfTheListInstallsItsGlobalBeforeTheScriptsLoad) {
  std::string script = "local missing = {}\n";
  for (const LuaModule& m : lua_modules()) {
    script += "if type(" + std::string(m.name) + ") ~= 'table' then missing[#missing + 1] = '" + std::string(m.name) + "' end\n";
  }
  script += "assert(#missing == 0, 'missing: ' .. table.concat(missing, ','))\nassert(type(transaction) == 'table')\n";
  config_.scripts = {write_script("modules.lua", script)};
  EXPECT_EQ(Runtime::check(config_), "");
  EXPECT_GE(lua_modules().size(), 15u);
}

TEST_F(RuntimeTest, ARuntimeGivenNoModulesRefusesToLoadAndSaysWhy) {
  config_.modules = {};
  config_.scripts = {write_script("policy.lua", "function hook.rcpt(r) end")};
  std::string error;
  EXPECT_FALSE(Runtime::create(config_, error));
  EXPECT_NE(error.find("no Lua modules given to the runtime"), std::string::npos) << error;
}

TEST_F(RuntimeTest, ReloadChangesNewSessionsAndABrokenReloadKeepsTheOldCode) {
  auto path = write_script("policy.lua", R"(function hook.noop() return "250 old\r\n" end)");
  start({path});
  Client old_session = connect();
  write_script("policy.lua", R"(function hook.noop() return "250 new\r\n" end)");
  EXPECT_EQ(runtime_->reload(), "");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 new");
  EXPECT_EQ(text(old_session.send(EventKind::Noop)), "250 old");  // finishes on its code
  write_script("policy.lua", "function hook.noop(\n");
  EXPECT_NE(runtime_->reload().find("policy.lua:"), std::string::npos);
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 new");
}

TEST_F(RuntimeTest, CapabilitiesListOnlyTheHooksDefined) {
  load("function hook.rcpt(r) end function hook.helo(h) end");
  Client c = connect();
  EXPECT_TRUE(c.observer->capabilities().events.has(EventKind::Rcpt));
  EXPECT_TRUE(c.observer->capabilities().events.has(EventKind::Helo));
  EXPECT_FALSE(c.observer->capabilities().events.has(EventKind::Mail));
  EXPECT_FALSE(c.observer->capabilities().events.has(EventKind::MessageChunk));
  EXPECT_FALSE(c.observer->capabilities().wants_message);
}

TEST_F(RuntimeTest, DotSeesTheTempFileWhichIsGoneAfterReset) {
  load(R"(function hook.dot(path)
            local f = assert(io.open(path, "rb")); local body = f:read("a"); f:close()
            return "550 5.7.1 " .. #body .. " " .. (path == client.msg_file and "same" or "differ") .. "\r\n"
          end)");
  Client c = connect();
  EXPECT_TRUE(c.observer->capabilities().wants_message);
  c.transaction = "T1";
  c.notify(EventKind::MessageChunk, "Subject: a\r\n\r\nhello\r\n");
  EXPECT_EQ(text(c.send(EventKind::EndOfMessage)), "550 5.7.1 21 same");
  // policyd names the file itself, never after the transaction id.
  std::vector<std::filesystem::path> files;
  for (const auto& f : std::filesystem::directory_iterator(config_.spool_dir)) files.push_back(f.path());
  ASSERT_EQ(files.size(), 1u);
  const auto file = files[0];
  EXPECT_EQ(file.extension(), ".msg");
  EXPECT_EQ(file.string().find("T1"), std::string::npos);
  c.transaction.clear();
  c.notify(EventKind::Reset);
  c.send(EventKind::Noop);  // the worker handled the Reset before this
  EXPECT_FALSE(std::filesystem::exists(file));
}

TEST_F(RuntimeTest, MessageChangesComeOutInTheDecision) {
  load(R"(function hook.dot(path)
            message.add_header("X-A", "1")
            message.change_header("Subject", 1, nil)
            message.add_rcpt("new@x")
            message.quarantine("suspicious")
          end)");
  Client c = connect();
  c.transaction = "T1";
  c.notify(EventKind::MessageChunk, "Subject: a\r\n\r\nb\r\n");
  Decision d = c.send(EventKind::EndOfMessage);
  ASSERT_EQ(d.changes.size(), 4u);
  EXPECT_EQ(d.changes[0].kind, MessageChange::Kind::AddHeader);
  EXPECT_TRUE(d.changes[1].erase);
  EXPECT_EQ(d.changes[2].value, "new@x");
  EXPECT_EQ(d.changes[3].kind, MessageChange::Kind::Quarantine);
}

TEST_F(RuntimeTest, MessageFunctionsOutsideDotAreErrorsAndHeaderInjectionIsRefused) {
  load(R"(function hook.rcpt(r) message.add_header("X", "1") return "250 reached\r\n" end
          function hook.dot(p) message.add_header("X", "a\r\nBcc: evil@x") return "250 reached\r\n" end)");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "a@b")), "CONTINUE");
  c.transaction = "T1";
  Decision d = c.send(EventKind::EndOfMessage);
  EXPECT_EQ(text(d), "CONTINUE");
  EXPECT_TRUE(d.changes.empty());
}
