// The options table of mailhook-front: every flag with default, bounds,
// unit and help (ARCHITECTURE pattern 5), also settable in --config FILE.
// Nothing here opens a socket; paths are checked by --check (check.cc).
#include "frontend/config.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "daemon/options.h"

namespace mailhook::front {
namespace {

using mailhook::daemon::duration_in;
using mailhook::daemon::size_in;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The table. Durations take units (500ms, 30s, 5m; a bare number is the
// old unit), sizes too (64K, 25M). Old names stay as deprecated aliases.
void build_table(CLI::App& app, daemon::Options& opts, FrontConfig& c, std::string& failure) {
  app.set_version_flag("--version", MAILHOOK_VERSION);
  app.get_formatter()->column_width(40);
  opts.not_a_setting(app.add_flag("--check", c.check,
                                  "check the settings (addresses, paths, certificates, limits), print one line per "
                                  "problem, exit 0 or 1")
                         ->configurable(false));
  app.add_option("--listen", c.listen, "SMTP listen address host:port")->capture_default_str();
  app.add_option("--policyd", c.policyd, "gRPC target of policyd: host:port, unix:PATH, ipv4:a:p,b:p, dns:///name:port")
      ->capture_default_str();
  app.add_option("--hostname", c.hostname, "greeting and Received name [default: the machine's name]");
  app.add_option("--smart-host", c.smart_host, "relay each accepted message to HOST:PORT [default: off, spool]");
  auto* queue_dir = app.add_option("--queue-dir", c.spool,
                                   "with no smart host, write each accepted message here (relative paths: to the "
                                   "working directory)")
                        ->capture_default_str();
  opts.alias("--spool", queue_dir);
  app.add_option("--policy-failure", failure, "tempfail or accept, when policyd is down or too slow")
      ->check(CLI::IsMember({"tempfail", "accept"}))
      ->capture_default_str();
  app.add_option("--policy-timeout", c.policy_timeout_ms, "how long to wait for one event's reply (bare number: ms)")
      ->transform(duration_in(milliseconds(1), "milliseconds"))
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  app.add_option("--policy-streams", c.policy_streams,
                 "SMTP sessions share this many long-lived gRPC streams to policyd (spread over replicas; a "
                 "policyd without them gets one call per session); 0: one call per session")
      ->check(CLI::Range(std::size_t{0}, kMaxPolicyStreams))
      ->capture_default_str();
  app.add_option("--policy-stream-age", c.policy_stream_age_s,
                 "after this a shared stream takes no new session and a new one is opened, so replicas that came "
                 "back get sessions (bare number: s)")
      ->transform(duration_in(seconds(1), "seconds"))
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--policy-pipeline-depth", c.policy_pipeline_depth,
                 "RFC 2920: events of pipelined MAIL/RCPT/DATA commands sent ahead with the one asked, in one frame "
                 "(speculative: policyd skips them after a refusal); 0: none; one call per session never batches")
      ->check(CLI::Range(std::size_t{0}, std::size_t{64}))
      ->capture_default_str();
  app.add_option("--max-message-size", c.max_message_size,
                 "advertised in SIZE and enforced (552 5.3.4); 25M, 64K (bare number: bytes)")
      ->transform(size_in(1, "bytes"))
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--max-recipients", c.max_recipients, "per transaction (452 4.5.3 beyond)")
      ->check(CLI::Range(1u, 100000u))
      ->capture_default_str();
  app.add_option("--max-connections", c.max_connections, "in total (421 4.7.0 beyond)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--max-connections-per-ip", c.max_connections_per_ip, "per client address (421 4.7.0 beyond)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--connection-limit-ipv6-prefix", c.connection_limit_ipv6_prefix,
                 "an IPv6 client counts against --max-connections-per-ip by this network prefix")
      ->check(CLI::Range(16u, 128u))
      ->capture_default_str();
  app.add_option("--command-timeout", c.command_timeout_s, "idle time between commands (421 4.4.2) (bare number: s)")
      ->transform(duration_in(seconds(1), "seconds"))
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--data-timeout", c.data_timeout_s, "idle time inside DATA (421 4.4.2) (bare number: s)")
      ->transform(duration_in(seconds(1), "seconds"))
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--greet-pause", c.greet_pause_ms,
                 "wait before the greeting, to catch clients that talk first (client.is_pipelining); 0 checks only "
                 "what already arrived (bare number: ms)")
      ->transform(duration_in(milliseconds(1), "milliseconds"))
      ->check(CLI::Range(0, 60000))
      ->capture_default_str();
  app.add_option("--metrics", c.metrics, "serve Prometheus metrics on HOST:PORT (GET /metrics), /healthz and /readyz [default: off]");
  auto* drain = app.add_option("--drain-timeout", c.shutdown_grace_s,
                               "how long SIGTERM lets open transactions finish; idle sessions get 421 4.3.2 at once "
                               "(bare number: s)")
                    ->transform(duration_in(seconds(1), "seconds"))
                    ->check(CLI::Range(0, 3600))
                    ->capture_default_str();
  opts.alias("--shutdown-grace", drain);
  app.add_option("--tls-cert", c.tls_cert, "PEM certificate chain; with --tls-key offers STARTTLS");
  app.add_option("--tls-key", c.tls_key, "PEM private key of --tls-cert");
  app.add_flag("--auth-plaintext", c.auth_plaintext,
               "offer AUTH PLAIN/LOGIN without TLS too (passwords then cross the network in the clear)");
  app.add_option("--xclient-hosts", c.xclient_hosts, "CIDR list of clients allowed to send XCLIENT [default: none]");
  auto* io_threads = app.add_option("--io-threads", c.threads, "I/O threads [default: cores]")->check(CLI::Range(1, 256));
  opts.alias("--threads", io_threads);
  app.add_flag("--log-stderr", c.log_stderr, "log to stderr instead of syslog (facility mail)");
  app.add_option("--policyd-tls-ca", c.policyd_tls_ca,
                 "PEM CA that policyd's gRPC certificate must chain to; with --policyd-tls-cert/--policyd-tls-key "
                 "the link to policyd is mutual TLS [default: off, plaintext]");
  app.add_option("--policyd-tls-cert", c.policyd_tls_cert, "PEM client certificate chain the front shows policyd");
  app.add_option("--policyd-tls-key", c.policyd_tls_key, "PEM private key of --policyd-tls-cert");
  app.add_option("--log-level", c.log_level,
                 "lowest level logged: error, warning, notice (refusals and problems only), info (also one line "
                 "per session and per message), debug (also every reply)")
      ->check(CLI::IsMember({"error", "warning", "notice", "info", "debug"}))
      ->capture_default_str();
}

// What CLI11's table cannot say: options that go together, and derived
// defaults. "" when fine.
std::string finish(FrontConfig& c, const std::string& failure) {
  if (c.tls_cert.empty() != c.tls_key.empty()) return "--tls-cert and --tls-key go together";
  if (!(c.policyd_tls_ca.empty() && c.policyd_tls_cert.empty() && c.policyd_tls_key.empty()) &&
      (c.policyd_tls_ca.empty() || c.policyd_tls_cert.empty() || c.policyd_tls_key.empty())) {
    return "--policyd-tls-ca, --policyd-tls-cert and --policyd-tls-key go together";
  }
  c.policy_failure = failure == "accept" ? PolicyFailure::Accept : PolicyFailure::Tempfail;
  if (c.threads == 0) c.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (c.hostname.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) == 0) c.hostname = host;
  }
  if (c.hostname.empty()) c.hostname = "localhost";
  return "";
}

}  // namespace

FrontConfig parse_config(int argc, char** argv) {
  FrontConfig c;
  std::string failure = "tempfail";
  CLI::App app{"mailhook-front: the SMTP front of mailhook; every SMTP event goes to mailhook-policyd.",
               "mailhook-front"};
  daemon::Options opts(app, "mailhook-front");
  build_table(app, opts, c, failure);
  opts.parse(argc, argv);
  if (opts.print_config_requested()) {
    std::fputs(opts.print_config().c_str(), stdout);
    std::exit(0);
  }
  if (std::string e = finish(c, failure); !e.empty()) {
    std::fprintf(stderr, "mailhook-front: %s\n", e.c_str());
    std::exit(2);
  }
  c.config_file = opts.config_file();
  return c;
}

}  // namespace mailhook::front
