// mailhook-policyd's configuration: one options table (options.cc) makes
// the flags and --help and fills a const PolicyConfig that main() passes
// down. Never a global; nothing here opens files or sockets. The Lua
// runtime's defaults are declared in its RuntimeConfig and taken here in
// the flags' units, and the milter's in its MilterConfig and StateLimits,
// so each default lives in one place (tests/unit/policyd/config_defaults_test.cc
// compares what the flags hand down with those structs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mailcore/wire/stream_limits.h"
#include "policyd/lua_runtime/runtime_options.h"
#include "policyd/milter/milter_config.h"

namespace mailhook::policyd {

struct PolicyConfig {
  std::string listen = "127.0.0.1:7070";
  std::vector<std::string> scripts;   // chained in this order
  std::string dialect = runtime_defaults().dialect;
  int workers = 0;                    // 0: number of cores
  int hook_timeout_ms = static_cast<int>(runtime_defaults().hook_timeout.count());
  int lua_memory_mb = static_cast<int>(runtime_defaults().lua_memory_bytes >> 20);
  std::string spool_dir;              // --temp-dir (was --spool-dir); empty: a fresh temp dir
  int drain_timeout_s = 30;
  std::string dns_servers;            // empty: /etc/resolv.conf
  int dns_timeout_ms = static_cast<int>(runtime_defaults().dns_timeout.count());
  std::string kv;
  int kv_timeout_ms = static_cast<int>(runtime_defaults().kv_timeout.count());
  int dns_cache_entries = static_cast<int>(runtime_defaults().dns_cache_entries);
  int dns_receive_buffer = runtime_defaults().dns_receive_buffer;  // bytes; 0: the system's default
  int spf_max_dns_lookups = static_cast<int>(runtime_defaults().spf_max_dns_lookups);  // RFC 7208 4.6.4
  int spf_max_void_lookups = static_cast<int>(runtime_defaults().spf_max_void_lookups);
  int spf_timeout_s = static_cast<int>(runtime_defaults().spf_timeout.count());
  bool ptr_lookup = runtime_defaults().ptr_lookup;
  std::string metrics;                // HOST:PORT; empty: none
  std::string milter;                 // inet:PORT@HOST or unix:PATH; empty: none
  int milter_timeout_s = milter::MilterConfig{}.timeout_s;
  std::size_t milter_max_packet = milter::MilterConfig{}.max_packet;  // bytes
  std::size_t milter_max_connections = milter::MilterConfig{}.max_connections;
  std::string milter_socket_mode = milter::octal_mode(milter::MilterConfig{}.socket_mode);  // of a unix milter socket
  std::uint64_t milter_max_message_size = milter::StateLimits{}.max_message_size;  // bytes
  std::size_t milter_max_line = milter::StateLimits{}.max_line;  // bytes, CRLF included
  std::size_t milter_max_headers = milter::StateLimits{}.max_headers;
  std::size_t milter_max_header_bytes = milter::StateLimits{}.max_header_bytes;
  std::size_t milter_max_macros = milter::StateLimits{}.max_macros;
  std::size_t milter_max_macro_bytes = milter::StateLimits{}.max_macro_bytes;
  bool check = false;
  std::vector<std::string> test;  // --test case files
  bool test_clock_stdin = false;  // --test-clock-stdin: the scripts' clock from stdin (tools/case-replay)
  bool shadow = false;
  int max_connection_age_s = 300;
  std::vector<std::string> shadow_scripts;
  std::vector<std::string> trace;
  bool log_stderr = false;
  std::size_t max_pending_events = wire::StreamLimitDefaults::max_pending_events;  // per gRPC stream, then reading pauses
  std::string tls_cert;                 // gRPC mTLS: all three or none
  std::string tls_key;
  std::string tls_client_ca;
  // The Lua sandbox's grants (docs/lua-api.md "What a script may touch").
  std::vector<std::string> lua_read_dirs;   // --lua-read-dir: io.open/io.lines read inside
  std::vector<std::string> lua_write_dirs;  // --lua-write-dir: also write, os.remove, os.rename
  std::vector<std::string> lua_path;        // --lua-path: require's templates ("DIR/?.lua")
  std::vector<std::string> lua_env;         // --lua-env: the variables os.getenv may read
  int load_timeout_ms = static_cast<int>(runtime_defaults().load_timeout.count());  // --load-timeout: all scripts
  std::size_t dkim_max_signatures = runtime_defaults().dkim_max_signatures;  // verified per dkim.verify
  std::string log_level = "info";           // --log-level: error, warning, notice, info, debug
  std::string hook_error = "default";       // --hook-error default|tempfail
  bool hook_error_tempfail = false;         // derived: a script error answers 451 4.3.0
  std::string config_file;                  // --config FILE; empty: none
  std::size_t max_sessions_per_stream = wire::StreamLimitDefaults::max_sessions_per_stream;  // --max-sessions-per-stream
};

// Parses argv. Returns the config, or exits the process with CLI11's
// message and code for --help or a bad flag (the only exit outside main).
// Exits after --print-config too.
PolicyConfig parse_config(int argc, char** argv);

// SIGHUP: the same argv and the config file read anew, without exiting:
// nullopt and `error` (one line) when the file or a value is bad.
std::optional<PolicyConfig> reparse_config(int argc, char** argv, std::string& error,
                                           std::vector<std::string>& warnings);

}  // namespace mailhook::policyd
