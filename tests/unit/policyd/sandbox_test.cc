// The Lua sandbox through the runtime (issue 19, finding 8): no bytecode,
// no finalizers, every coroutine and the scripts' load under a deadline,
// files only where granted (--lua-read-dir, --lua-write-dir, the hook's
// message file), os.getenv only for --lua-env, require only from
// --lua-path; and client bytes escaped in syslog.* lines (finding 7).
#include <unistd.h>

#include <fstream>
#include <thread>

#include "tests/unit/policyd/runtime_harness.h"

using namespace mailhook;
using namespace mailhook::policyd;
using namespace mailhook::policyd::testing;

namespace {

class SandboxTest : public RuntimeTest {
 protected:
  std::filesystem::path make_dir(const std::string& name) {
    std::filesystem::create_directories(dir_ / name);
    return dir_ / name;
  }
  void write_file(const std::filesystem::path& p, const std::string& text) { std::ofstream(p) << text; }
  // hook.noop's reply text after the "250 ".
  std::string noop(Client& c) {
    Decision d = c.send(EventKind::Noop);
    return d.action == Decision::Action::Reply && !d.reply.lines.empty() ? d.reply.lines.front() : "CONTINUE";
  }
};

}  // namespace

// --- (a) text chunks only ---------------------------------------------

TEST_F(SandboxTest, StringDumpIsGoneAndBinaryChunksAreRefused) {
  load(R"(function hook.noop()
            local dumped = string.dump and string.dump(function() return 1 end) or "\27Lua\84\0\25\147\r\n\26\n"
            local f, err = load(dumped)
            local g = load("return 1", "x", "b")
            return "250 " .. tostring(string.dump) .. " " .. tostring(f) .. " " .. tostring(g)
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "nil nil nil");
}

TEST_F(SandboxTest, TextChunksStillLoadWithTheirEnvironment) {
  load(R"(function hook.noop()
            local f = load("return x + 1", "=chunk", "t", {x = 41})
            return "250 " .. f()
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "42");
}

// --- (b) no finalizers -------------------------------------------------

TEST_F(SandboxTest, GcMetamethodsAreRefused) {
  load(R"(function hook.noop()
            local ok, err = pcall(setmetatable, {}, {__gc = function() while true do end end})
            local plain = setmetatable({}, {__index = {a = "kept"}})
            return "250 " .. tostring(ok) .. " " .. tostring(err):match("__gc metamethods are not allowed") .. " " .. plain.a
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "false __gc metamethods are not allowed kept");
}

TEST_F(SandboxTest, FileHandleMetatableIsHiddenAndCollectorCannotBeStopped) {
  config_.lua_read_dirs = {make_dir("data")};
  write_file(dir_ / "data" / "f", "x");
  load("local path = '" + (dir_ / "data" / "f").string() + R"('
          function hook.noop()
            local f = assert(io.open(path))
            local mt = getmetatable(f)
            f:close()
            local ok = pcall(collectgarbage, "stop")
            return "250 " .. tostring(mt) .. " " .. tostring(ok) .. " " .. tostring(collectgarbage("isrunning"))
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "file false true");
}

TEST_F(SandboxTest, AScriptsMetamethodOnItsHookTableNeverRunsOutsideAHook) {
  // policyd reads hook.* raw: an __index here would run with no deadline
  // and no error handler (a hang or an abort of policyd).
  load(R"(hook = setmetatable({}, {__index = function() while true do end end})
          hook.noop = function() return "250 alive" end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "alive");
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "a@b")), "CONTINUE");
}

// --- (c) coroutines and loading under a deadline -----------------------

TEST_F(SandboxTest, CoroutineCreatedAtLoadTimeIsStoppedByTheHookTimeout) {
  config_.hook_timeout = std::chrono::milliseconds(200);
  load(R"(local co = coroutine.create(function() while true do end end)
          local wrapped = coroutine.wrap(function() while true do end end)
          function hook.rcpt(r) coroutine.resume(co) end
          function hook.mail(s) wrapped() end
          function hook.noop() return "250 alive" end)");
  Client c = connect();
  EXPECT_EQ(c.send(EventKind::Rcpt, "", "a@b").reply.code, 451);
  EXPECT_EQ(c.send(EventKind::Mail, "", "a@b").reply.code, 451);
  EXPECT_EQ(noop(c), "alive");
}

TEST_F(SandboxTest, CoroutinesStillYieldAndResume) {
  load(R"(function hook.noop()
            local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
            local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
            local _, x = coroutine.resume(co, 1)
            local _, y = coroutine.resume(co, 5)
            local ok, err = pcall(coroutine.wrap(function() error("inner") end))
            return "250 " .. gen() .. gen() .. gen() .. " " .. x .. " " .. y .. " " .. tostring(err:match("inner"))
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "123 2 10 inner");
}

TEST_F(SandboxTest, LoadTimeInfiniteLoopFailsStartWithAClearError) {
  config_.load_timeout = std::chrono::milliseconds(200);
  config_.scripts = {write_script("spin.lua", "local x = 0\nwhile true do x = x + 1 end\n")};
  std::string error;
  EXPECT_FALSE(Runtime::create(config_, error));
  EXPECT_NE(error.find("spin.lua:2:"), std::string::npos) << error;
  EXPECT_NE(error.find("--load-timeout (200 ms)"), std::string::npos) << error;
  // A coroutine spinning at load time is bounded the same way.
  config_.scripts = {write_script("co.lua", "coroutine.wrap(function() while true do end end)()\n")};
  EXPECT_FALSE(Runtime::create(config_, error));
  EXPECT_NE(error.find("--load-timeout"), std::string::npos) << error;
}

TEST_F(SandboxTest, ACatastrophicPatternAtLoadTimeStopsAtTheLoadTimeout) {
  // string.find backtracks in C, out of the count hook's reach: the
  // pattern functions check the load deadline themselves (issue 19, 8d).
  config_.load_timeout = std::chrono::milliseconds(200);
  config_.scripts = {write_script("pattern.lua", "local s = string.rep('a', 30) .. '@'\n"
                                                  "string.find(s, string.rep('a?', 30) .. string.rep('a', 30) .. '$')\n")};
  std::string error;
  EXPECT_FALSE(Runtime::create(config_, error));
  EXPECT_NE(error.find("pattern.lua:2:"), std::string::npos) << error;
  EXPECT_NE(error.find("loading ran past --load-timeout (200 ms)"), std::string::npos) << error;
}

TEST_F(SandboxTest, ReloadOfASpinningScriptFailsAndKeepsTheOldCode) {
  config_.load_timeout = std::chrono::milliseconds(200);
  auto path = write_script("policy.lua", R"(function hook.noop() return "250 old" end)");
  start({path});
  write_script("policy.lua", "while true do end");
  EXPECT_NE(runtime_->reload().find("--load-timeout"), std::string::npos);
  Client c = connect();
  EXPECT_EQ(noop(c), "old");
}

// --- (e) files, environment and modules by grant only ------------------

TEST_F(SandboxTest, NoFileOutsideTheGrants) {
  load(R"(function hook.noop()
            local f, err = io.open("/etc/passwd")
            local lines_ok = pcall(io.lines, "/etc/passwd")
            local names = {}
            for _, n in ipairs{"dofile", "loadfile"} do names[#names + 1] = tostring(_G[n]) end
            for _, n in ipairs{"popen", "read", "write", "input", "output", "tmpfile", "stdout", "stderr", "stdin"} do
              names[#names + 1] = tostring(io[n])
            end
            names[#names + 1] = tostring(os.tmpname)
            names[#names + 1] = tostring(os.execute)
            local m, merr = mime.parse("/etc/passwd")
            return "250 " .. tostring(f) .. " " .. tostring(err:match("not readable by scripts")) .. " " ..
                   tostring(lines_ok) .. " " .. table.concat(names, ",") .. " " .. tostring(m) .. " " ..
                   tostring(merr:match("not readable by scripts"))
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "nil not readable by scripts false nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,nil nil "
                     "not readable by scripts");
}

TEST_F(SandboxTest, ReadDirIsReadableAndNotEscapableWithDotDotOrSymlinks) {
  const auto data = make_dir("data");
  config_.lua_read_dirs = {data};
  write_file(data / "list", "one\ntwo\n");
  write_file(dir_ / "secret", "s");
  std::filesystem::create_symlink(dir_ / "secret", data / "link");
  std::filesystem::create_directory_symlink(dir_, data / "up");
  load("local d = '" + data.string() + R"('
          local function can(p) local f = io.open(p) if f then f:close() return "y" end return "n" end
          function hook.noop()
            local n = 0
            for line in io.lines(d .. "/list") do n = n + 1 end
            return "250 " .. n .. can(d .. "/list") .. can(d .. "/../secret") .. can(d .. "/link") ..
                   can(d .. "/up/secret") .. can(d .. "/up/data/list") .. can(d) .. can(d .. "/nope")
          end)");
  Client c = connect();
  // list via a symlinked directory resolves back inside: still readable.
  EXPECT_EQ(noop(c), "2ynnnynn");
}

TEST_F(SandboxTest, WritesRemovesAndRenamesOnlyInsideWriteDirs) {
  const auto ro = make_dir("ro");
  const auto rw = make_dir("rw");
  config_.lua_read_dirs = {ro};
  config_.lua_write_dirs = {rw};
  write_file(ro / "keep", "k");
  load("local ro, rw = '" + ro.string() + "', '" + rw.string() + R"('
          local function yn(v) return v and "y" or "n" end
          function hook.noop()
            local w = io.open(rw .. "/new", "w")
            w:write("data") w:close()
            local r = io.open(rw .. "/new"):read("a")
            return "250 " .. r .. " " .. yn(io.open(ro .. "/x", "w")) .. yn(io.open(ro .. "/keep", "a")) ..
                   yn(os.remove(ro .. "/keep")) .. yn(os.rename(ro .. "/keep", rw .. "/stolen")) ..
                   yn(os.rename(rw .. "/new", ro .. "/planted")) .. yn(os.rename(rw .. "/new", rw .. "/moved")) ..
                   yn(os.remove(rw .. "/moved")) .. yn(io.open(rw .. "/../ro/keep", "w"))
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "data nnnnnyyn");
  EXPECT_TRUE(std::filesystem::exists(ro / "keep"));
  EXPECT_FALSE(std::filesystem::exists(rw / "moved"));
}

TEST_F(SandboxTest, TheHooksMessageFileIsReadableOnlyDuringItsTransaction) {
  load(R"(last = nil
          function hook.dot(path)
            last = path
            local f = io.open(path, "rb")
            local body = f and f:read("a") or "none"
            if f then f:close() end
            local w = io.open(path, "w")
            return "550 5.7.1 " .. #body .. " " .. tostring(w) .. "\r\n"
          end
          function hook.noop() return "250 " .. tostring(io.open(last or "")) end)");
  Client c = connect();
  c.transaction = "T1";
  c.notify(EventKind::MessageChunk, "Subject: a\r\n\r\nhello\r\n");
  EXPECT_EQ(text(c.send(EventKind::EndOfMessage)), "550 5.7.1 21 nil");
  // Another session cannot open that file (it is not its message).
  Client other = connect();
  EXPECT_EQ(noop(other), "nil");
}

TEST_F(SandboxTest, GetenvAnswersOnlyTheNamesOfLuaEnv) {
  ::setenv("MAILHOOK_SANDBOX_TEST", "visible", 1);
  ::setenv("MAILHOOK_SANDBOX_SECRET", "hidden", 1);
  config_.lua_env = {"MAILHOOK_SANDBOX_TEST"};
  load(R"(function hook.noop()
            return "250 " .. tostring(os.getenv("MAILHOOK_SANDBOX_TEST")) .. " " ..
                   tostring(os.getenv("MAILHOOK_SANDBOX_SECRET")) .. " " .. tostring(os.getenv("HOME"))
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "visible nil nil");
}

TEST_F(SandboxTest, RequireLoadsOnlyFromLuaPath) {
  const auto lib = make_dir("lib");
  write_file(lib / "greet.lua", "return { word = 'hello' }");
  make_dir("lib/sub");
  write_file(lib / "sub" / "deep.lua", "return 'deep'");
  write_file(dir_ / "outside.lua", "return 'outside'");
  load(R"(function hook.noop()
            local ok = pcall(require, "greet")
            return "250 " .. tostring(ok) .. " " .. require("string").format("%s", "std")
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "false std");  // no --lua-path: nothing from disk
  runtime_->stop();
  config_.lua_path = (lib / "?.lua").string();
  load(R"(function hook.noop()
            local bad = {}
            for _, n in ipairs{"..outside", "../outside", "/etc/passwd", "sub..deep"} do
              bad[#bad + 1] = tostring((pcall(require, n)))
            end
            return "250 " .. require("greet").word .. " " .. require("sub.deep") .. " " .. table.concat(bad, ",")
          end)");
  Client d = connect();
  EXPECT_EQ(noop(d), "hello deep false,false,false,false");
}

TEST_F(SandboxTest, RequiredModulesLoadTextOnly) {
  const auto lib = make_dir("lib");
  write_file(lib / "bin.lua", std::string("\x1bLua\x54", 5) + std::string("\0\x19\x93\r\n\x1a\n", 7) + "junk");
  config_.lua_path = (lib / "?.lua").string();
  load(R"(function hook.noop()
            local ok, err = pcall(require, "bin")
            return "250 " .. tostring(ok) .. " " .. tostring(err:match("binary chunk") ~= nil)
          end)");
  Client c = connect();
  EXPECT_EQ(noop(c), "false true");
}

TEST_F(SandboxTest, MissingGrantDirectoryIsAStartError) {
  config_.lua_read_dirs = {dir_ / "absent"};
  config_.scripts = {write_script("p.lua", "")};
  std::string error;
  EXPECT_FALSE(Runtime::create(config_, error));
  EXPECT_NE(error.find("--lua-read-dir"), std::string::npos) << error;
}

// --- 7: client bytes in syslog.* and print are escaped -----------------

TEST_F(SandboxTest, SyslogAndPrintEscapeLineBreaksAndControlBytes) {
  load(R"(function hook.auth(arg, user, password)
            syslog.info("auth.lua: failed login for " .. user .. " from " .. client.address)
            print("printed", user)
          end)");
  Client c = connect();
  SessionEvent e;
  e.seq = ++c.seq;
  e.kind = EventKind::Auth;
  e.wants_reply = true;
  e.argument = "PLAIN";
  e.parameters = {{"user", "x\nauthenticated user=root\r\x01"}, {"password", "p"}};
  ::testing::internal::CaptureStderr();
  c.session->post(std::move(e));
  next_decision(*c.observer);
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("failed login for x\\nauthenticated user=root\\r\\x01 from"), std::string::npos) << out;
  EXPECT_NE(out.find("printed\\tx\\nauthenticated"), std::string::npos) << out;
  EXPECT_EQ(out.find("\nauthenticated user=root"), std::string::npos) << out;
}

TEST_F(SandboxTest, SessionLogLinesEscapeWhatTheClientSent) {
  load("function hook.helo(h) end function hook.mail(s) end");
  ::testing::internal::CaptureStderr();
  {
    Client c = connect();
    c.send(EventKind::Helo, "evil\nforged helo line");
    c.transaction = "T1";
    c.send(EventKind::Mail, "", "a\r\nforged sender line@x");
  }  // the session closes: its transaction and session lines are logged
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (runtime_->open_sessions() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling a condition, with a deadline
  }
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("helo=evil\\nforged helo line"), std::string::npos) << out;
  EXPECT_NE(out.find("from=<a\\r\\nforged sender line@x>"), std::string::npos) << out;
  EXPECT_EQ(out.find("\nforged"), std::string::npos) << out;
}

TEST_F(SandboxTest, TraceLinesEscapeTheClientsCommandAndArguments) {
  config_.trace = {"192.0.2.0/24"};
  load("function hook.helo(h) end");
  Client c = connect();
  ::testing::internal::CaptureStderr();
  c.send(EventKind::Helo, "evil\r\nforged trace line");
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("input=\"INPUT evil\\r\\nforged trace line\""), std::string::npos) << out;
  EXPECT_NE(out.find("hook.helo(\"evil\\r\\nforged trace line\")"), std::string::npos) << out;
  EXPECT_EQ(out.find("\nforged"), std::string::npos) << out;
}
