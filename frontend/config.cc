// The options table of mailhook-front: every flag with default, bounds,
// unit and help (ARCHITECTURE pattern 5).
#include "frontend/config.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <thread>

namespace mailhook::front {

FrontConfig parse_config(int argc, char** argv) {
  FrontConfig c;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) c.hostname = host;
  std::string failure = "tempfail";

  CLI::App app{"mailhook-front: the SMTP front of mailhook; every SMTP event goes to mailhook-policyd.",
               "mailhook-front"};
  app.set_version_flag("--version", MAILHOOK_VERSION);
  app.get_formatter()->column_width(40);
  app.add_option("--listen", c.listen, "SMTP listen address host:port")->capture_default_str();
  app.add_option("--policyd", c.policyd, "gRPC target of policyd: host:port, unix:PATH, ipv4:a:p,b:p, dns:///name:port")
      ->capture_default_str();
  app.add_option("--hostname", c.hostname, "greeting and Received name")->capture_default_str();
  app.add_option("--smart-host", c.smart_host, "relay each accepted message to HOST:PORT [default: off, spool]");
  app.add_option("--spool", c.spool, "with no smart host, write each accepted message here")->capture_default_str();
  app.add_option("--policy-failure", failure, "tempfail or accept, when policyd is down or too slow")
      ->check(CLI::IsMember({"tempfail", "accept"}))
      ->capture_default_str();
  app.add_option("--policy-timeout", c.policy_timeout_ms, "milliseconds to wait for one event's reply")
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  app.add_option("--max-message-size", c.max_message_size, "bytes; advertised in SIZE and enforced (552 5.3.4)")
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
  app.add_option("--command-timeout", c.command_timeout_s, "seconds idle between commands (421 4.4.2)")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--data-timeout", c.data_timeout_s, "seconds idle inside DATA (421 4.4.2)")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--greet-pause", c.greet_pause_ms,
                 "milliseconds to wait before the greeting, to catch clients that talk first "
                 "(client.is_pipelining); 0 checks only what already arrived")
      ->check(CLI::Range(0, 60000))
      ->capture_default_str();
  app.add_option("--metrics", c.metrics, "serve Prometheus metrics on HOST:PORT (GET /metrics), /healthz and /readyz [default: off]");
  app.add_option("--shutdown-grace", c.shutdown_grace_s,
                 "seconds SIGTERM lets open transactions finish; idle sessions get 421 4.3.2 at once")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  app.add_option("--tls-cert", c.tls_cert, "PEM certificate chain; with --tls-key offers STARTTLS")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", c.tls_key, "PEM private key of --tls-cert")->check(CLI::ExistingFile);
  app.add_flag("--auth-plaintext", c.auth_plaintext,
               "offer AUTH PLAIN/LOGIN without TLS too (passwords then cross the network in the clear)");
  app.add_option("--xclient-hosts", c.xclient_hosts, "CIDR list of clients allowed to send XCLIENT [default: none]");
  app.add_option("--threads", c.threads, "I/O threads [default: cores]")->check(CLI::Range(1, 256));
  app.add_flag("--log-stderr", c.log_stderr, "log to stderr instead of syslog (facility mail)");
  app.add_option("--policyd-tls-ca", c.policyd_tls_ca,
                 "PEM CA that policyd's gRPC certificate must chain to; with --policyd-tls-cert/--policyd-tls-key "
                 "the link to policyd is mutual TLS [default: off, plaintext]")
      ->check(CLI::ExistingFile);
  app.add_option("--policyd-tls-cert", c.policyd_tls_cert, "PEM client certificate chain the front shows policyd")
      ->check(CLI::ExistingFile);
  app.add_option("--policyd-tls-key", c.policyd_tls_key, "PEM private key of --policyd-tls-cert")
      ->check(CLI::ExistingFile);
  app.add_option("--log-level", c.log_level,
                 "lowest level logged: error, warning, notice (refusals and problems only), info (also one line "
                 "per session and per message), debug (also every reply)")
      ->check(CLI::IsMember({"error", "warning", "notice", "info", "debug"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    std::fprintf(stderr, "mailhook-front: --tls-cert and --tls-key go together\n");
    std::exit(2);
  }
  if (!(c.policyd_tls_ca.empty() && c.policyd_tls_cert.empty() && c.policyd_tls_key.empty()) &&
      (c.policyd_tls_ca.empty() || c.policyd_tls_cert.empty() || c.policyd_tls_key.empty())) {
    std::fprintf(stderr, "mailhook-front: --policyd-tls-ca, --policyd-tls-cert and --policyd-tls-key go together\n");
    std::exit(2);
  }
  c.policy_failure = failure == "accept" ? PolicyFailure::Accept : PolicyFailure::Tempfail;
  if (c.threads == 0) c.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (c.hostname.empty()) c.hostname = "localhost";
  return c;
}

}  // namespace mailhook::front
