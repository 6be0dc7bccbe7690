// mailhook-front's configuration: the options table in config.cc makes the
// flags and --help and fills a const FrontConfig that main() passes down.
// The session's limits take session::Limits' defaults (the ones --test
// replays with); the structs this fills (SessionMuxOptions) declare none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "mailcore/session/session_machine.h"

namespace mailhook::front {

// --policy-streams' ceiling: the shared streams a front keeps open.
inline constexpr std::size_t kMaxPolicyStreams = 64;

enum class PolicyFailure : std::uint8_t {
  Tempfail,  // 421 4.3.0 at connect, 451 4.3.0 in a session
  Accept,    // default replies, mail goes on
};

struct FrontConfig {
  std::string listen = "127.0.0.1:2525";
  std::string policyd = "127.0.0.1:7070";
  std::string hostname;
  std::string smart_host;  // empty: spool
  std::string spool = "./spool";  // --queue-dir (was --spool)
  PolicyFailure policy_failure = PolicyFailure::Tempfail;
  int policy_timeout_ms = 10000;
  std::uint64_t max_message_size = session::Limits{}.max_message_size;
  std::uint32_t max_recipients = session::Limits{}.max_recipients;
  int max_connections = 1000;
  int max_connections_per_ip = 50;
  unsigned connection_limit_ipv6_prefix = 64;  // IPv6 clients count per /64
  int command_timeout_s = 300;
  int data_timeout_s = 600;
  int shutdown_grace_s = 30;  // --drain-timeout (was --shutdown-grace)
  int greet_pause_ms = 0;  // wait this long for a client that talks first
  std::string metrics;    // host:port of the Prometheus endpoint; empty: off
  std::string tls_cert;   // PEM chain; with tls_key enables STARTTLS
  std::string tls_key;
  bool auth_plaintext = false;  // offer AUTH without TLS
  std::string xclient_hosts;    // CIDR list
  int threads = 0;  // --io-threads (was --threads)
  bool log_stderr = false;
  std::string policyd_tls_ca;    // gRPC to policyd over mTLS: all three or none
  std::string policyd_tls_cert;  // the front's client certificate chain (PEM)
  std::string policyd_tls_key;
  std::string log_level = "info";  // --log-level: error, warning, notice, info, debug
  bool check = false;       // --check: validate the settings and exit
  std::string config_file;  // --config FILE; empty: none
  std::size_t policy_streams = 4;    // --policy-streams: shared Sessions streams; 0: one call per session
  int policy_stream_age_s = 10;      // --policy-stream-age: a shared stream then takes no new session
  std::size_t policy_pipeline_depth = 16;  // --policy-pipeline-depth: events sent ahead per ask; 0: none
};

// Exits with CLI11's message for --help or a bad flag, and after --print-config.
FrontConfig parse_config(int argc, char** argv);

}  // namespace mailhook::front
