// mailhook-policyd's configuration: one options table (options.cc) makes
// the flags and --help and fills a const PolicyConfig that main() passes
// down. Never a global; nothing here opens files or sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mailhook::policyd {

struct PolicyConfig {
  std::string listen = "127.0.0.1:7070";
  std::vector<std::string> scripts;   // chained in this order
  std::string dialect = "auto";
  int workers = 0;                    // 0: number of cores
  int hook_timeout_ms = 5000;
  int lua_memory_mb = 256;
  std::string spool_dir;              // --temp-dir (was --spool-dir); empty: a fresh temp dir
  int drain_timeout_s = 30;
  std::string dns_servers;            // empty: /etc/resolv.conf
  int dns_timeout_ms = 5000;
  std::string kv;
  int kv_timeout_ms = 1000;
  int dns_cache_entries = 10000;
  int dns_receive_buffer = 1 << 20;  // bytes; 0: the system's default
  int spf_max_dns_lookups = 10;       // RFC 7208 4.6.4; spf.check's default
  int spf_max_void_lookups = 2;
  int spf_timeout_s = 20;
  bool ptr_lookup = true;
  std::string metrics;                // HOST:PORT; empty: none
  std::string milter;                 // inet:PORT@HOST or unix:PATH; empty: none
  int milter_timeout_s = 7210;
  std::size_t milter_max_packet = 1u << 20;  // bytes
  std::size_t milter_max_connections = 1000;
  std::string milter_socket_mode = "0660";   // octal, of a unix milter socket
  std::uint64_t milter_max_message_size = 26214400;  // bytes, the front's --max-message-size default
  std::size_t milter_max_line = 1u << 20;          // bytes, CRLF included
  std::size_t milter_max_headers = 1000;
  std::size_t milter_max_header_bytes = 1u << 20;
  std::size_t milter_max_macros = 1000;
  std::size_t milter_max_macro_bytes = 256u << 10;
  bool check = false;
  std::vector<std::string> test;  // --test case files
  bool test_clock_stdin = false;  // --test-clock-stdin: the scripts' clock from stdin (tools/case-replay)
  bool shadow = false;
  int max_connection_age_s = 300;
  std::vector<std::string> shadow_scripts;
  std::vector<std::string> trace;
  bool log_stderr = false;
  std::size_t max_pending_events = 64;  // per gRPC stream, then reading pauses
  std::string tls_cert;                 // gRPC mTLS: all three or none
  std::string tls_key;
  std::string tls_client_ca;
  // The Lua sandbox's grants (docs/lua-api.md "What a script may touch").
  std::vector<std::string> lua_read_dirs;   // --lua-read-dir: io.open/io.lines read inside
  std::vector<std::string> lua_write_dirs;  // --lua-write-dir: also write, os.remove, os.rename
  std::vector<std::string> lua_path;        // --lua-path: require's templates ("DIR/?.lua")
  std::vector<std::string> lua_env;         // --lua-env: the variables os.getenv may read
  int load_timeout_ms = 30000;              // --load-timeout: loading the scripts, in all
  std::size_t dkim_max_signatures = 8;      // --dkim-max-signatures: verified per dkim.verify
  std::string log_level = "info";           // --log-level: error, warning, notice, info, debug
  std::string hook_error = "default";       // --hook-error default|tempfail
  bool hook_error_tempfail = false;         // derived: a script error answers 451 4.3.0
  std::string config_file;                  // --config FILE; empty: none
  std::size_t max_sessions_per_stream = 10000;  // --max-sessions-per-stream: open on one Sessions stream
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
