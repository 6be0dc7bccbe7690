// The shipped default policy, lua/policy.lua, through the runtime (issue
// 19, finding 12): its per-client rate table stays bounded whatever the
// number of distinct clients, and counts an IPv6 client by its /64.
#include <cstdio>
#include <fstream>
#include <iterator>

#include "tests/unit/policyd/runtime_harness.h"

using namespace mailhook;
using namespace mailhook::policyd;
using namespace mailhook::policyd::testing;

namespace {

std::string shipped_policy() {
  std::ifstream in(std::string(MAILHOOK_LUA_DIR) + "/policy.lua", std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_F(RuntimeTest, DefaultPolicyRateTableStaysBoundedUnderManyDistinctClients) {
  // The real hook.accept, driven from a hook of the same script: 100,000
  // distinct IPv6 /64s (and then 100,000 IPv4 addresses) within one
  // minute, the heap measured after a full collection each time.
  config_.hook_timeout = std::chrono::seconds(120);
  const std::string driver = R"(
function hook.noop()
  collectgarbage("collect")
  local before = collectgarbage("count")
  for i = 1, 100000 do
    hook.accept(string.format("2001:db8:%x:%x::1", i // 65536, i % 65536), "")
  end
  collectgarbage("collect")
  local v6 = collectgarbage("count") - before
  for i = 1, 100000 do
    hook.accept(string.format("10.%d.%d.%d", i // 65536, (i // 256) % 256, i % 256), "")
  end
  collectgarbage("collect")
  local v4 = collectgarbage("count") - before
  return string.format("250 %d %d", math.floor(v6), math.floor(v4))
end
)";
  load(shipped_policy() + driver);
  Client c = connect();
  Decision d = c.send(EventKind::Noop);
  ASSERT_EQ(d.reply.code, 250) << text(d);
  int v6_kib = 0, v4_kib = 0;
  ASSERT_EQ(std::sscanf(d.reply.lines.front().c_str(), "%d %d", &v6_kib, &v4_kib), 2) << text(d);
  std::printf("heap growth: %d KiB after 100,000 IPv6 /64s, %d KiB after 100,000 more IPv4 clients\n", v6_kib,
              v4_kib);
  // 2 x MAX_CLIENTS (10,000) entries are about 3.5 MB; 100,000 entries
  // unpruned are over 15 MB.
  EXPECT_LT(v6_kib, 6 * 1024) << "heap growth after 100,000 IPv6 clients, KiB";
  EXPECT_LT(v4_kib, 6 * 1024) << "heap growth after 100,000 more IPv4 clients, KiB";
}

TEST_F(RuntimeTest, DefaultPolicyCountsAnIpv6ClientByItsSlash64) {
  load(shipped_policy());
  // 60 connections a minute are allowed per client; the 61st, from another
  // address of the same /64 written differently, is refused.
  for (int i = 1; i <= 60; ++i) {
    char address[64];
    std::snprintf(address, sizeof address, "2001:db8:1:2::%x", i);
    ASSERT_EQ(text(connect(address).connect), "CONTINUE") << address;
  }
  EXPECT_EQ(connect("2001:DB8:1:2:ffff:ffff:ffff:ffff").connect.reply.code, 421);
  // Another /64 next door is another client.
  EXPECT_EQ(text(connect("2001:db8:1:3::1").connect), "CONTINUE");
}

TEST_F(RuntimeTest, DefaultPolicyStillLimitsOneIpv4Client) {
  load(shipped_policy());
  for (int i = 1; i <= 60; ++i) ASSERT_EQ(text(connect("192.0.2.50").connect), "CONTINUE") << i;
  EXPECT_EQ(connect("192.0.2.50").connect.reply.code, 421);
  EXPECT_EQ(text(connect("192.0.2.51").connect), "CONTINUE");
}
