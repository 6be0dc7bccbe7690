// Each default is declared once (issue 22, item 4): mailhook-policyd with
// no flags hands the runtime, the resolver, the milter and --test exactly
// the defaults their own structs declare. Fails when a flag's default, or
// the unit it is converted through, drifts from the struct it fills.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mailcore/session/limits.h"
#include "policyd/config.h"
#include "policyd/config_reload.h"
#include "policyd/milter/milter_adapter.h"

using namespace mailhook;
using namespace mailhook::policyd;

namespace {

PolicyConfig parsed(std::vector<std::string> args) {
  args.insert(args.begin(), "mailhook-policyd");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return parse_config(static_cast<int>(argv.size()), argv.data());
}

TEST(ConfigDefaults, TheRuntimeGetsItsOwnDefaultsFromTheFlags) {
  const RuntimeConfig r = runtime_config_of(parsed({}));
  const RuntimeConfig& d = runtime_defaults();
  EXPECT_EQ(r.dialect, d.dialect);
  EXPECT_EQ(r.hook_timeout, d.hook_timeout);
  EXPECT_EQ(r.lua_memory_bytes, d.lua_memory_bytes);
  EXPECT_EQ(r.dns_timeout, d.dns_timeout);
  EXPECT_EQ(r.dns_cache_entries, d.dns_cache_entries);
  EXPECT_EQ(r.dns_receive_buffer, d.dns_receive_buffer);
  EXPECT_EQ(r.ptr_lookup, d.ptr_lookup);
  EXPECT_EQ(r.spf_max_dns_lookups, d.spf_max_dns_lookups);
  EXPECT_EQ(r.spf_max_void_lookups, d.spf_max_void_lookups);
  EXPECT_EQ(r.spf_timeout, d.spf_timeout);
  EXPECT_EQ(r.kv_timeout, d.kv_timeout);
  EXPECT_EQ(r.load_timeout, d.load_timeout);
  EXPECT_EQ(r.dkim_max_signatures, d.dkim_max_signatures);
  // The SPF limits are RFC 7208 4.6.4's, declared by spf::Limits.
  EXPECT_EQ(d.spf_max_dns_lookups, 10u);
  EXPECT_EQ(d.spf_max_void_lookups, 2u);
}

TEST(ConfigDefaults, TheMilterGetsItsOwnDefaultsFromTheFlags) {
  const milter::MilterConfig m = milter::config_of(parsed({}));
  const milter::MilterConfig d;
  EXPECT_EQ(m.timeout_s, d.timeout_s);
  EXPECT_EQ(m.max_packet, d.max_packet);
  EXPECT_EQ(m.max_connections, d.max_connections);
  EXPECT_EQ(m.socket_mode, d.socket_mode);
  EXPECT_EQ(m.limits.max_macros, d.limits.max_macros);
  EXPECT_EQ(m.limits.max_macro_bytes, d.limits.max_macro_bytes);
  EXPECT_EQ(m.limits.max_message_size, d.limits.max_message_size);
  EXPECT_EQ(m.limits.max_line, d.limits.max_line);
  EXPECT_EQ(m.limits.max_headers, d.limits.max_headers);
  EXPECT_EQ(m.limits.max_header_bytes, d.limits.max_header_bytes);
  // An MTA's messages get the size the front would give them.
  EXPECT_EQ(d.limits.max_message_size, session::Limits{}.max_message_size);
}

TEST(ConfigDefaults, TheSocketModeFlagReadsBackAsTheModeItIsPrintedFrom) {
  EXPECT_EQ(parsed({}).milter_socket_mode, "0660");
  EXPECT_EQ(milter::config_of(parsed({"--milter-socket-mode", "0600"})).socket_mode, 0600u);
}

}  // namespace
