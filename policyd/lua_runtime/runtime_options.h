// The Lua runtime's own options: what the workers, their Lua states and
// their resolvers are made of. policyd/config_reload.cc maps the daemon's
// PolicyConfig onto it (runtime_config_of); the runtime never sees the
// daemon's flags table or policyd/config.h. Plain data, no behaviour. Its
// member initialisers are the one place the runtime's defaults are
// declared (the SPF limits take RFC 7208's from spf::Limits); policyd/
// config.h's flags take them (runtime_defaults()), and the structs the
// runtime fills from it (dns::ResolverConfig, kv::Config, Generation)
// declare none.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mailcore/telemetry/metrics.h"
#include "policyd/lua_runtime/lua_module.h"
#include "policyd/spf/check.h"

namespace mailhook::policyd {

namespace dns {
class FakeDns;
}
namespace map {
class MapStore;
}

class ScriptClock;  // script_clock.h

struct RuntimeConfig {
  std::vector<std::filesystem::path> scripts;     // chained in this order
  std::string dialect = "auto";                   // --dialect: auto, smtpe, smtpf, qpsmtpd, vpop3
  int workers = 2;                                // Lua worker threads
  std::chrono::milliseconds hook_timeout{5000};   // per hook call
  bool hook_error_tempfail = false;               // --hook-error tempfail: a script error answers 451 4.3.0
  std::size_t lua_memory_bytes = 256u << 20;      // heap cap per worker state
  std::filesystem::path spool_dir;                // message temp files
  std::string dns_servers;                        // "ip[:port],…"; empty: /etc/resolv.conf
  std::chrono::milliseconds dns_timeout{5000};    // per DNS query
  std::size_t dns_cache_entries = 10000;          // per worker; 0: no cache
  int dns_receive_buffer = 1 << 20;               // --dns-receive-buffer: SO_RCVBUF of the resolver's sockets
  bool ptr_lookup = true;                         // resolve client.host when not given
  unsigned spf_max_dns_lookups = spf::Limits{}.dns_lookups;    // --spf-max-dns-lookups: spf.check's default
  unsigned spf_max_void_lookups = spf::Limits{}.void_lookups;  // --spf-max-void-lookups
  std::chrono::seconds spf_timeout{20};           // --spf-timeout: one whole spf.check
  std::string kv_address;                         // --kv IP:PORT of Redis; empty: kv.* answer an error
  std::chrono::milliseconds kv_timeout{1000};     // per kv command
  std::shared_ptr<dns::FakeDns> fake_dns;         // --test: answers from a table, no network
  std::shared_ptr<ScriptClock> clock;             // --test: the case file's clock; nullptr: the system clock
  bool shadow = false;                            // --shadow: every script's replies are logged, not sent
  std::vector<std::filesystem::path> shadow_scripts;  // --shadow-script: run first, logged, never sent
  std::vector<std::string> trace;                 // --trace CIDR: sessions whose every event and hook is logged
  telemetry::Registry* registry = nullptr;        // --metrics; nullptr: kept private
  // The sandbox's grants (docs/lua-api.md "What a script may touch").
  std::vector<std::filesystem::path> lua_read_dirs;   // --lua-read-dir
  std::vector<std::filesystem::path> lua_write_dirs;  // --lua-write-dir: read, write, remove, rename
  std::string lua_path;                           // --lua-path: require's "DIR/?.lua;…"; empty: nothing from disk
  std::vector<std::string> lua_env;               // --lua-env: names os.getenv answers
  std::chrono::milliseconds load_timeout{30000};  // --load-timeout: all scripts' top-level code
  std::shared_ptr<map::MapStore> map_store;       // map.file's parsed files; the runtime makes one
  std::size_t dkim_max_signatures = 8;            // --dkim-max-signatures: per dkim.verify, the rest get policy
  // The Lua modules every generation opens, in order: lua_api/modules.h's
  // lua_modules(), given by whoever builds the runtime (the daemon,
  // tests). Empty: nothing loads (a bug, said so). A reload keeps them.
  LuaModules modules;
};

// The defaults above, for the daemon's flags (policyd/config.h), so each
// is declared once. Built on first use, not at static initialisation.
inline const RuntimeConfig& runtime_defaults() {
  static const RuntimeConfig defaults;
  return defaults;
}

}  // namespace mailhook::policyd
