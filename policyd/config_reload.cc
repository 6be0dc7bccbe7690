// SIGHUP's re-read of the configuration (config_reload.h). A bad file, a
// bad value or a script that does not load leaves the running state
// untouched; the error is logged with the file and counted.
#include "policyd/config_reload.h"

#include <chrono>
#include <functional>
#include <utility>
#include <vector>

#include "mailcore/telemetry/log.h"
#include "policyd/lua_api/modules.h"

namespace mailhook::policyd {
namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Settings a reload cannot apply (sockets, threads, the temp dir): the
// flag names whose value differs.
std::vector<std::string> restart_only_changes(const PolicyConfig& a, const PolicyConfig& b) {
  std::vector<std::string> out;
  const auto differs = [&](const char* name, bool d) {
    if (d) out.emplace_back(name);
  };
  differs("--listen", a.listen != b.listen);
  differs("--metrics", a.metrics != b.metrics);
  differs("--milter", a.milter != b.milter);
  differs("--workers", a.workers != b.workers);
  differs("--temp-dir", a.spool_dir != b.spool_dir);
  differs("--kv", a.kv != b.kv);
  differs("--kv-timeout", a.kv_timeout_ms != b.kv_timeout_ms);
  differs("--dns-server", a.dns_servers != b.dns_servers);
  differs("--dns-timeout", a.dns_timeout_ms != b.dns_timeout_ms);
  differs("--dns-cache-entries", a.dns_cache_entries != b.dns_cache_entries);
  differs("--dns-receive-buffer", a.dns_receive_buffer != b.dns_receive_buffer);
  differs("--ptr-lookup", a.ptr_lookup != b.ptr_lookup);
  differs("--trace", a.trace != b.trace);
  differs("--tls-cert", a.tls_cert != b.tls_cert || a.tls_key != b.tls_key || a.tls_client_ca != b.tls_client_ca);
  differs("--max-pending-events", a.max_pending_events != b.max_pending_events);
  differs("--max-connection-age", a.max_connection_age_s != b.max_connection_age_s);
  differs("--drain-timeout", a.drain_timeout_s != b.drain_timeout_s);
  differs("--milter-*", a.milter_timeout_s != b.milter_timeout_s || a.milter_max_packet != b.milter_max_packet ||
                            a.milter_max_connections != b.milter_max_connections ||
                            a.milter_socket_mode != b.milter_socket_mode ||
                            a.milter_max_message_size != b.milter_max_message_size ||
                            a.milter_max_line != b.milter_max_line || a.milter_max_headers != b.milter_max_headers ||
                            a.milter_max_header_bytes != b.milter_max_header_bytes ||
                            a.milter_max_macros != b.milter_max_macros ||
                            a.milter_max_macro_bytes != b.milter_max_macro_bytes);
  return out;
}

}  // namespace

RuntimeConfig runtime_config_of(const PolicyConfig& c) {
  RuntimeConfig r;
  r.modules = lua_modules();
  for (const auto& s : c.scripts) r.scripts.emplace_back(s);
  r.workers = c.workers;
  r.dialect = c.dialect;
  r.hook_timeout = std::chrono::milliseconds(c.hook_timeout_ms);
  r.lua_memory_bytes = static_cast<std::size_t>(c.lua_memory_mb) << 20;
  r.spool_dir = c.spool_dir;
  r.dns_servers = c.dns_servers;
  r.dns_timeout = std::chrono::milliseconds(c.dns_timeout_ms);
  r.kv_address = c.kv;
  r.shadow = c.shadow;
  for (const auto& s : c.shadow_scripts) r.shadow_scripts.emplace_back(s);
  r.trace = c.trace;
  r.kv_timeout = std::chrono::milliseconds(c.kv_timeout_ms);
  r.dns_cache_entries = static_cast<std::size_t>(c.dns_cache_entries);
  r.dns_receive_buffer = c.dns_receive_buffer;
  r.ptr_lookup = c.ptr_lookup;
  r.spf_max_dns_lookups = static_cast<unsigned>(c.spf_max_dns_lookups);
  r.spf_max_void_lookups = static_cast<unsigned>(c.spf_max_void_lookups);
  r.spf_timeout = std::chrono::seconds(c.spf_timeout_s);
  for (const auto& d : c.lua_read_dirs) r.lua_read_dirs.emplace_back(d);
  for (const auto& d : c.lua_write_dirs) r.lua_write_dirs.emplace_back(d);
  for (const auto& p : c.lua_path) r.lua_path += (r.lua_path.empty() ? "" : ";") + p;
  r.lua_env = c.lua_env;
  r.load_timeout = std::chrono::milliseconds(c.load_timeout_ms);
  r.hook_error_tempfail = c.hook_error_tempfail;
  r.dkim_max_signatures = c.dkim_max_signatures;
  return r;
}

ConfigReload::ConfigReload(int argc, char** argv, const PolicyConfig& started, telemetry::Registry& registry)
    : argc_(argc),
      argv_(argv),
      current_(started),
      ok_(registry.counter("mailhook_policyd_reloads_total",
                           "SIGHUP reloads of the config file and scripts, by result (failed: the old state stays)",
                           "result=\"ok\"")),
      failed_(registry.counter("mailhook_policyd_reloads_total",
                               "SIGHUP reloads of the config file and scripts, by result (failed: the old state stays)",
                               "result=\"failed\"")),
      last_success_(registry.gauge("mailhook_policyd_last_reload_success_timestamp_seconds",
                                   "Unix time the config and scripts in force were loaded (start or SIGHUP)")) {
  last_success_.add(unix_now());
}

std::string ConfigReload::operator()(Runtime& runtime) {
  const std::string where = current_.config_file.empty() ? "" : " (--config " + current_.config_file + ")";
  std::string error;
  std::vector<std::string> warnings;
  std::optional<PolicyConfig> next = reparse_config(argc_, argv_, error, warnings);
  if (!next) {
    failed_.add();
    log::error("reload failed, keeping the old scripts and config: {}{}", error, where);
    return error;
  }
  for (const auto& w : warnings) log::warning("{}", w);
  if (std::string e = runtime.reload(runtime_config_of(*next)); !e.empty()) {
    failed_.add();
    log::error("reload failed, keeping the old scripts and config: {}{}", e, where);
    return e;
  }
  for (const std::string& flag : restart_only_changes(current_, *next)) {
    log::warning("reload: {} changed{}; it takes effect at the next restart", flag, where);
  }
  std::string scripts;
  for (const auto& s : next->shadow_scripts) scripts += (scripts.empty() ? "" : ", ") + s + " (shadow)";
  for (const auto& s : next->scripts) {
    scripts += (scripts.empty() ? "" : ", ") + s + (next->shadow ? " (shadow)" : "");
  }
  // Restart-only settings keep their running values for the next diff.
  PolicyConfig kept = current_;
  kept.scripts = next->scripts;
  kept.shadow = next->shadow;
  kept.shadow_scripts = next->shadow_scripts;
  kept.dialect = next->dialect;
  kept.hook_timeout_ms = next->hook_timeout_ms;
  kept.lua_memory_mb = next->lua_memory_mb;
  kept.load_timeout_ms = next->load_timeout_ms;
  kept.lua_read_dirs = next->lua_read_dirs;
  kept.lua_write_dirs = next->lua_write_dirs;
  kept.lua_path = next->lua_path;
  kept.lua_env = next->lua_env;
  kept.spf_max_dns_lookups = next->spf_max_dns_lookups;
  kept.spf_max_void_lookups = next->spf_max_void_lookups;
  kept.spf_timeout_s = next->spf_timeout_s;
  current_ = std::move(kept);
  ok_.add();
  last_success_.add(unix_now() - last_success_.value());
  log::notice("reload: new sessions use the new scripts: {}{}", scripts, where);
  return "";
}

}  // namespace mailhook::policyd
