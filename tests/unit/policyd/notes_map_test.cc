// The per-session `session` / `transaction` tables, client.recipients and
// map.file through the real runtime: each script answers with what it saw.
#include <fstream>

#include "tests/unit/policyd/runtime_harness.h"

using namespace mailhook;
using namespace mailhook::policyd;
using namespace mailhook::policyd::testing;

TEST_F(RuntimeTest, SessionTableBelongsToTheCallingSession) {
  load(R"(
    function hook.helo(name) session.name = name end
    function hook.noop() return "250 " .. tostring(session.name) .. "\r\n" end
  )");
  Client one = connect();
  Client two = connect();  // the same worker: shared globals, separate tables
  one.send(EventKind::Helo, "one.test");
  two.send(EventKind::Helo, "two.test");
  EXPECT_EQ(text(one.send(EventKind::Noop)), "250 one.test");
  EXPECT_EQ(text(two.send(EventKind::Noop)), "250 two.test");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 nil");
}

TEST_F(RuntimeTest, TransactionTableStartsAfreshWhenIdTransChanges) {
  load(R"(
    local function v(x) return tostring(x) end
    function hook.helo() local ok = pcall(function() transaction.x = 1 end)
                         return "250 " .. v(ok) .. " " .. v(transaction.x) .. "\r\n" end
    function hook.mail(from) transaction.from = from; transaction.n = 0 end
    function hook.rcpt(to)
      transaction.n = transaction.n + 1
      local keys = {}
      for k in pairs(transaction) do keys[#keys + 1] = k end
      table.sort(keys)
      return "250 " .. v(transaction.from) .. " " .. transaction.n .. " " .. table.concat(keys, ",") .. "\r\n"
    end
    function hook.noop() return "250 " .. v(transaction.from) .. "\r\n" end
  )");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Helo, "h.test")), "250 false nil");  // no transaction: writes refused
  c.transaction = "T1";
  c.send(EventKind::Mail, "", "a@one.test");
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "r1@x.test")), "250 a@one.test 1 from,n");
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "r2@x.test")), "250 a@one.test 2 from,n");
  c.transaction.clear();  // RSET / end of message in the front
  EXPECT_EQ(text(c.send(EventKind::Noop)), "250 nil");
  c.transaction = "T2";
  EXPECT_EQ(text(c.send(EventKind::Noop)), "250 nil");  // a new transaction sees nothing of T1
}

TEST_F(RuntimeTest, SessionAndTransactionTablesAreFreedByTheRuntime) {
  load(R"(
    alive = setmetatable({}, {__mode = "v"})
    function hook.mail() transaction.t = {}; alive.tx = transaction.t end
    function hook.helo() session.t = {}; alive.s = session.t end
    function hook.noop()
      collectgarbage("collect")
      return "250 session=" .. tostring(alive.s ~= nil) .. " transaction=" .. tostring(alive.tx ~= nil) .. "\r\n"
    end
  )");
  Client a = connect();
  a.send(EventKind::Helo, "a.test");
  a.transaction = "T1";
  a.send(EventKind::Mail, "", "s@a.test");
  EXPECT_EQ(text(a.send(EventKind::Noop)), "250 session=true transaction=true");
  a.transaction.clear();
  EXPECT_EQ(text(a.send(EventKind::Noop)), "250 session=true transaction=false");
  a.notify(EventKind::Close);
  a.session->close();  // the transport ends the session: the runtime discards it
  Client b = connect();
  EXPECT_EQ(text(b.send(EventKind::Noop)), "250 session=false transaction=false");
}

TEST_F(RuntimeTest, NotesAreNotWritableOutsideAHook) {
  std::string error;
  config_.scripts = {write_script("policy.lua", "session.x = 1")};
  runtime_ = Runtime::create(config_, error);
  EXPECT_FALSE(runtime_);
  EXPECT_NE(error.find("session is only available inside a hook"), std::string::npos) << error;
}

TEST_F(RuntimeTest, ClientRecipientsListsTheAcceptedRecipientsOfTheTransaction) {
  load(R"(
    function hook.rcpt(to)
      if to:match("^bad@") then return "550 5.1.1 no such user\r\n" end
      return "250 2.1.5 before=" .. table.concat(client.recipients, ",") .. "\r\n"
    end
    function hook.data() return "354 " .. #client.recipients .. " " .. table.concat(client.recipients, ",") .. "\r\n" end
    function hook.noop() return "250 " .. tostring(client.recipients) .. "\r\n" end
  )");
  Client c = connect();
  c.transaction = "T1";
  c.send(EventKind::Mail, "", "s@a.test");
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "one@b.test")), "250 2.1.5 before=");
  c.send(EventKind::Rcpt, "", "bad@b.test");
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "two@b.test")), "250 2.1.5 before=one@b.test");
  EXPECT_EQ(text(c.send(EventKind::Data)), "354 2 one@b.test,two@b.test");
  c.transaction = "T2";
  c.send(EventKind::Mail, "", "s@a.test");
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", "three@b.test")), "250 2.1.5 before=");
  c.transaction.clear();
  EXPECT_EQ(text(c.send(EventKind::Noop)), "250 nil");  // outside a transaction
}

namespace {

void write_file(const std::filesystem::path& p, const std::string& text) { std::ofstream(p, std::ios::trunc) << text; }

std::string map_script(const std::filesystem::path& file) {
  return "local m, err = map.file('" + file.string() + R"(')
    function hook.helo(key)
      if not m then return "550 " .. err .. "\r\n" end
      local value, matched = m:lookup(key)
      return "250 " .. tostring(value) .. " [" .. tostring(matched) .. "]\r\n"
    end)";
}

}  // namespace

TEST_F(RuntimeTest, MapFileLooksUpInPostfixOrder) {
  std::filesystem::create_directories(dir_ / "maps");
  write_file(dir_ / "maps" / "access",
             "# comment\n"
             "192.0.2.1        REJECT exact address\n"
             "198.51.100       REJECT by octets\n"
             "203.0.113.0/25   REJECT by cidr\n"
             "2001:db8::/32    REJECT v6 cidr\n"
             "Spammer@Example.COM   REJECT the address\n"
             "example.com      OK the domain\n"
             "example.net      REJECT parent domain\n"
             "postmaster@      OK any postmaster\n"
             "/^dyn-[0-9]+\\./  REJECT dynamic\n");
  config_.lua_read_dirs = {dir_ / "maps"};
  load(map_script(dir_ / "maps" / "access"));
  Client c = connect();
  auto look = [&](const std::string& key) { return text(c.send(EventKind::Helo, key)); };
  EXPECT_EQ(look("192.0.2.1"), "250 REJECT exact address [192.0.2.1]");
  EXPECT_EQ(look("::ffff:192.0.2.1"), "250 REJECT exact address [192.0.2.1]");
  EXPECT_EQ(look("198.51.100.77"), "250 REJECT by octets [198.51.100]");
  EXPECT_EQ(look("203.0.113.127"), "250 REJECT by cidr [203.0.113.0/25]");
  EXPECT_EQ(look("203.0.113.128"), "250 nil [nil]");
  EXPECT_EQ(look("2001:db8:1::5"), "250 REJECT v6 cidr [2001:db8::/32]");
  EXPECT_EQ(look("spammer@EXAMPLE.com"), "250 REJECT the address [Spammer@Example.COM]");
  EXPECT_EQ(look("other@example.com"), "250 OK the domain [example.com]");
  EXPECT_EQ(look("a@mail.sub.example.net"), "250 REJECT parent domain [example.net]");
  EXPECT_EQ(look("postmaster@elsewhere.test"), "250 OK any postmaster [postmaster@]");
  EXPECT_EQ(look("DYN-42.isp.test"), "250 REJECT dynamic [/^dyn-[0-9]+\\./]");
  EXPECT_EQ(look("static.isp.test"), "250 nil [nil]");
}

TEST_F(RuntimeTest, MapFileIsReloadedWhenItChangesAndKeepsTheLastGoodContents) {
  std::filesystem::create_directories(dir_ / "maps");
  const auto file = dir_ / "maps" / "access";
  write_file(file, "key one\n");
  config_.lua_read_dirs = {dir_ / "maps"};
  load(map_script(file));
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Helo, "key")), "250 one [key]");
  write_file(file, "key two, longer\n");  // a different size: a different stamp whatever the clock
  EXPECT_EQ(text(c.send(EventKind::Helo, "key")), "250 two, longer [key]");
  write_file(file, "key\n");  // no value: does not parse
  EXPECT_EQ(text(c.send(EventKind::Helo, "key")), "250 two, longer [key]");
  std::filesystem::remove(file);
  EXPECT_EQ(text(c.send(EventKind::Helo, "key")), "250 two, longer [key]");
  write_file(file, "key three\n");
  EXPECT_EQ(text(c.send(EventKind::Helo, "key")), "250 three [key]");
}

TEST_F(RuntimeTest, MapFileOutsideTheReadGrantsIsRefused) {
  write_file(dir_ / "access", "key value\n");
  load(map_script(dir_ / "access"));
  const std::string reply = text(connect().send(EventKind::Helo, "key"));
  EXPECT_NE(reply.find("not readable by scripts"), std::string::npos) << reply;
}

TEST_F(RuntimeTest, MapFileWithABadLineIsAnErrorValueNamingTheLine) {
  std::filesystem::create_directories(dir_ / "maps");
  write_file(dir_ / "maps" / "access", "good value\n10.0.0.0/33 REJECT\n");
  config_.lua_read_dirs = {dir_ / "maps"};
  load(map_script(dir_ / "maps" / "access"));
  const std::string reply = text(connect().send(EventKind::Helo, "good"));
  EXPECT_NE(reply.find("line 2: not a CIDR network"), std::string::npos) << reply;
}

TEST_F(RuntimeTest, MapFileThroughASymbolicLinkOrDotDotIsRefused) {
  std::filesystem::create_directories(dir_ / "maps");
  write_file(dir_ / "secret", "key value\n");
  std::filesystem::create_symlink(dir_ / "secret", dir_ / "maps" / "link");
  config_.lua_read_dirs = {dir_ / "maps"};
  load("local a, ea = map.file('" + (dir_ / "maps" / "link").string() + "')\n" +
       "local b, eb = map.file('" + (dir_ / "maps" / ".." / "secret").string() + R"(')
       function hook.noop() return "250 " .. tostring(a) .. " " .. ea .. " | " .. tostring(b) .. " " .. eb .. "\r\n" end)");
  const std::string reply = text(connect().send(EventKind::Noop));
  EXPECT_NE(reply.find("nil " + (dir_ / "maps" / "link").string() + ": a symbolic link"), std::string::npos) << reply;
  EXPECT_NE(reply.find("| nil "), std::string::npos) << reply;
  EXPECT_NE(reply.find("not readable by scripts"), std::string::npos) << reply;
}

TEST_F(RuntimeTest, MapFileReplacedByASymbolicLinkKeepsTheLastGoodContents) {
  std::filesystem::create_directories(dir_ / "maps");
  write_file(dir_ / "secret", "key stolen\n");
  const auto file = dir_ / "maps" / "access";
  write_file(file, "key mine\n");
  config_.lua_read_dirs = {dir_ / "maps"};
  load(map_script(file));
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Helo, "key")), "250 mine [key]");
  std::filesystem::remove(file);
  std::filesystem::create_symlink(dir_ / "secret", file);
  EXPECT_EQ(text(c.send(EventKind::Helo, "key")), "250 mine [key]");
}
