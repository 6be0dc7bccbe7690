// spf.check and net.cidr/match/network through the real runtime: the
// check runs on the worker's resolver (here the --test table resolver,
// which answers later on the loop like c-ares), so every spf.check below
// suspends its hook and is resumed from the run queue.
#include "policyd/dns/fake_resolver.h"
#include "tests/unit/policyd/runtime_harness.h"

using namespace mailhook;
using namespace mailhook::policyd;
using namespace mailhook::policyd::testing;

namespace {

class SpfLuaTest : public RuntimeTest {
 protected:
  void zone(std::initializer_list<const char*> lines) {
    config_.fake_dns = std::make_shared<dns::FakeDns>();
    for (const char* l : lines) {
      std::string error;
      ASSERT_TRUE(config_.fake_dns->add(l, error)) << l << ": " << error;
    }
  }
};

const char* kEcho = R"(
local function v(x) if x == nil then return "nil" end return tostring(x) end
function hook.helo(arg)
  local ip, sender = arg:match("^(%S+) ?(%S*)$")
  local result, exp, mech = spf.check(ip, "helo.example", sender)
  return "250 " .. v(result) .. " [" .. v(exp) .. "] " .. v(mech) .. "\r\n"
end)";

TEST_F(SpfLuaTest, CheckReturnsResultExplanationAndMechanism) {
  zone({"example.test TXT v=spf1 ip4:192.0.2.1 mx include:inc.example.test -all exp=why.example.test",
        "why.example.test TXT %{i} may not send for %{d}", "example.test MX 10 mx.example.test",
        "mx.example.test A 192.0.2.2", "inc.example.test TXT v=spf1 ip6:2001:db8::/32 -all",
        "broken.test TXT v=spf1 ip4:192.0.2.300", "down.test TIMEOUT", "soft.test TXT v=spf1 ~all"});
  load(kEcho);
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Helo, "192.0.2.1 u@example.test")), "250 pass [nil] ip4:192.0.2.1");
  EXPECT_EQ(text(c.send(EventKind::Helo, "192.0.2.2 u@example.test")), "250 pass [nil] mx");
  EXPECT_EQ(text(c.send(EventKind::Helo, "2001:db8::7 u@example.test")), "250 pass [nil] include:inc.example.test");
  EXPECT_EQ(text(c.send(EventKind::Helo, "192.0.2.9 u@example.test")),
            "250 fail [192.0.2.9 may not send for example.test] -all");
  EXPECT_EQ(text(c.send(EventKind::Helo, "192.0.2.9 u@soft.test")), "250 softfail [nil] ~all");
  EXPECT_EQ(text(c.send(EventKind::Helo, "192.0.2.9 u@broken.test")), "250 permerror [nil] nil");
  EXPECT_EQ(text(c.send(EventKind::Helo, "192.0.2.9 u@down.test")), "250 temperror [nil] nil");
  EXPECT_EQ(text(c.send(EventKind::Helo, "192.0.2.9 u@nothing.test")), "250 none [nil] nil");
  EXPECT_EQ(text(c.send(EventKind::Helo, "nonsense u@example.test")), "250 nil [invalid address] nil");
}

TEST_F(SpfLuaTest, EmptySenderIsCheckedAsPostmasterAtHelo) {
  zone({"helo.example TXT v=spf1 exists:%{l}.%{o}.x.helo.example -all",
        "postmaster.helo.example.x.helo.example A 127.0.0.2"});
  load(kEcho);
  EXPECT_EQ(text(connect().send(EventKind::Helo, "192.0.2.1 ")), "250 pass [nil] exists:%{l}.%{o}.x.helo.example");
}

TEST_F(SpfLuaTest, OptionsAreCheckedAndLimitsApply) {
  zone({"two.test TXT v=spf1 a:a.two.test a:b.two.test -all", "a.two.test A 198.51.100.1", "b.two.test A 198.51.100.2"});
  load(R"(function hook.noop()
            local r1 = spf.check("192.0.2.1", "h", "u@two.test", {max_dns_lookups = 1})
            local r2 = spf.check("192.0.2.1", "h", "u@two.test", {max_dns_lookups = 2, receiver = "me.example"})
            local ok, err = pcall(spf.check, "192.0.2.1", "h", "u@two.test", {max_dns_lookups = 0})
            return "250 " .. r1 .. " " .. r2 .. " " .. tostring(ok) .. " " .. tostring(err:match("max_dns_lookups") ~= nil) .. "\r\n"
          end)");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 permerror fail false true");
}

TEST_F(SpfLuaTest, CheckOutsideAHookIsAnError) {
  config_.fake_dns = std::make_shared<dns::FakeDns>();
  std::string error;
  config_.scripts = {write_script("policy.lua", "spf.check('192.0.2.1', 'h', 'u@x.test')")};
  EXPECT_FALSE(Runtime::create(config_, error));
  EXPECT_NE(error.find("only available inside a hook"), std::string::npos) << error;
}

TEST_F(SpfLuaTest, NetCidrMatchAndNetwork) {
  load(R"(
local function v(x) if x == nil then return "nil" end return tostring(x) end
function hook.noop()
  local m = net.cidr("192.0.2.7/24")
  local bad, err = net.cidr("192.0.2.0/33")
  local list = {"2001:db8::/32", m, "198.51.100.1"}
  local out = {
    tostring(m), v(m:contains("192.0.2.200")), v(m:contains("::ffff:192.0.2.1")), v(m:contains("192.0.3.1")),
    v(bad), err,
    v(net.match("2001:db8:1::1", list)), v(net.match("::ffff:198.51.100.1", list)), v(net.match("203.0.113.1", list)),
    v(net.match("192.0.2.1", "192.0.2.0/30")), v(select(2, net.match("no", list))),
    net.network("2001:db8:1:2:3:4:5:6", 64), net.network("::ffff:192.0.2.77", 24),
    v(select(2, net.network("192.0.2.1", 33))), v(select(2, net.network("x", 8))),
  }
  return "250 " .. table.concat(out, " ") .. "\r\n"
end
function hook.helo() net.match("192.0.2.1", {"not a network"}) return "250 unreachable\r\n" end)");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Noop)),
            "250 192.0.2.0/24 true true false nil bad prefix length: 192.0.2.0/33 true true false true invalid address "
            "2001:db8:1:2::/64 192.0.2.0/24 bad prefix length invalid address");
  // A malformed network in a list is a script error: the hook gets its default.
  EXPECT_NE(text(c.send(EventKind::Helo, "x")), "250 unreachable");
}

}  // namespace
