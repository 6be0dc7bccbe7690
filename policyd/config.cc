// The options table of mailhook-policyd: every flag with its default,
// bounds, unit and help, in one place (ARCHITECTURE pattern 5), also
// settable in --config FILE. Nothing here opens a socket or loads a script.
#include "policyd/config.h"

#include <arpa/inet.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "daemon/options.h"
#include "policyd/dialects/dialects.h"

namespace mailhook::policyd {

namespace {

using mailhook::daemon::duration_in;
using mailhook::daemon::size_in;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The table. Durations take units (500ms, 30s, 5m; a bare number is the
// old unit), sizes too (64K, 25M). Old names stay as deprecated aliases.
void build_table(CLI::App& app, daemon::Options& opts, PolicyConfig& c, std::string& ptr_lookup) {
  app.set_version_flag("--version", MAILHOOK_VERSION);
  app.get_formatter()->column_width(34);

  app.add_option("--listen", c.listen, "gRPC address, host:port or unix:PATH")
      ->capture_default_str();
  app.add_option("--script", c.scripts,
                 "Lua policy script; repeatable: chained in the order given, the first reply decides "
                 "[default: lua/policy.lua, relative to the working directory]");
  app.add_option("--dialect", c.dialect, "Lua API of the scripts: auto (recognised per script), smtpe, smtpf, qpsmtpd or vpop3")
      ->check(CLI::IsMember(dialect_choices()))
      ->capture_default_str();
  app.add_option("--workers", c.workers, "Lua worker threads, each with its own Lua state [default: cores]")
      ->check(CLI::Range(1, 256));
  app.add_option("--hook-timeout", c.hook_timeout_ms,
                 "how long a hook may run; past it the event gets 451 4.3.0 (bare number: ms)")
      ->transform(duration_in(milliseconds(1), "milliseconds"))
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  app.add_option("--lua-memory", c.lua_memory_mb, "heap cap of each worker's Lua state, 256M, 1G (bare number: MB)")
      ->transform(size_in(std::uint64_t{1} << 20, "megabytes"))
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  auto* temp_dir = app.add_option("--temp-dir", c.spool_dir,
                                  "directory for each message's temp file (hook.dot, hook.forward) "
                                  "[default: a fresh directory under $TMPDIR]");
  opts.alias("--spool-dir", temp_dir);
  app.add_option("--drain-timeout", c.drain_timeout_s,
                 "how long SIGTERM waits for open sessions before cancelling them (bare number: s)")
      ->transform(duration_in(seconds(1), "seconds"))
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  app.add_option("--dns-server", c.dns_servers,
                 "nameserver(s) for dns.* and client.host, ip[:port] comma-separated ([::1]:53 for IPv6) "
                 "[default: from /etc/resolv.conf]");
  app.add_option("--max-connection-age", c.max_connection_age_s,
                 "time after which a front is asked to reconnect (GOAWAY), so new replicas behind dns:/// get "
                 "sessions; open sessions are not cut; 0: never (bare number: s)")
      ->transform(duration_in(seconds(1), "seconds"))
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  app.add_option("--kv", c.kv, "Redis IP:PORT for the kv module (state shared by replicas); empty: kv.* return an error")
      ->capture_default_str();
  app.add_option("--kv-timeout", c.kv_timeout_ms, "how long a kv command may take, then it returns an error (bare number: ms)")
      ->transform(duration_in(milliseconds(1), "milliseconds"))
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  app.add_option("--dns-timeout", c.dns_timeout_ms, "how long a DNS query may take in all, UDP retried twice within it (bare number: ms)")
      ->transform(duration_in(milliseconds(1), "milliseconds"))
      ->check(CLI::Range(10, 60000))
      ->capture_default_str();
  app.add_option("--dns-cache-entries", c.dns_cache_entries,
                 "DNS answers each worker keeps for their TTL (at most 1 h; 0: no cache)")
      ->check(CLI::Range(0, 10000000))
      ->capture_default_str();
  app.add_option("--dns-receive-buffer", c.dns_receive_buffer,
                 "receive buffer (SO_RCVBUF) of each worker's DNS sockets in bytes, for bursts of answers; at most "
                 "net.core.rmem_max (a warning says when the kernel gave less); 0: the system's default")
      ->check(CLI::Range(0, 1 << 28))
      ->capture_default_str();
  app.add_option("--spf-max-dns-lookups", c.spf_max_dns_lookups,
                 "DNS-querying terms (include, a, mx, ptr, exists, redirect) one spf.check may evaluate; past it: "
                 "permerror (RFC 7208 4.6.4)")
      ->check(CLI::Range(1, 20))
      ->capture_default_str();
  app.add_option("--spf-max-void-lookups", c.spf_max_void_lookups,
                 "NXDOMAIN or empty answers one spf.check may get; past it: permerror (RFC 7208 4.6.4)")
      ->check(CLI::Range(0, 20))
      ->capture_default_str();
  app.add_option("--spf-timeout", c.spf_timeout_s, "how long one spf.check may take in all; past it: temperror (bare number: s)")
      ->transform(duration_in(seconds(1), "seconds"))
      ->check(CLI::Range(1, 300))
      ->capture_default_str();
  app.add_option("--ptr-lookup", ptr_lookup,
                 "look up client.host (PTR, forward-confirmed) when the front or MTA did not give it: yes or no")
      ->check(CLI::IsMember({"yes", "no"}))
      ->capture_default_str();
  app.add_option("--milter", c.milter,
                 "also serve the milter protocol (Postfix smtpd_milters, Sendmail INPUT_MAIL_FILTER): "
                 "inet:PORT@HOST, inet6:PORT@HOST or unix:PATH");
  app.add_option("--milter-timeout", c.milter_timeout_s, "how long a silent MTA connection is kept, and a reply may wait for the MTA to read it (bare number: s)")
      ->transform(duration_in(seconds(1), "seconds"))
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--milter-max-packet", c.milter_max_packet,
                 "the largest milter packet accepted from the MTA (bare number: bytes); a larger one closes that connection")
      ->transform(size_in(1, "bytes"))
      ->check(CLI::Range(std::size_t{65536}, std::size_t{64} << 20))
      ->capture_default_str();
  app.add_option("--milter-max-connections", c.milter_max_connections,
                 "MTA connections open at once; past it a new one is closed at once (the MTA applies its "
                 "milter_default_action)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
      ->capture_default_str();
  app.add_option("--milter-socket-mode", c.milter_socket_mode, "permissions of a unix:PATH milter socket, octal")
      ->check([](const std::string& v) -> std::string {
        if (v.empty() || v.size() > 4 || v.find_first_not_of("01234567") != std::string::npos) {
          return "an octal mode such as 0660, not " + v;
        }
        return "";
      })
      ->capture_default_str();
  app.add_option("--milter-max-message-size", c.milter_max_message_size,
                 "bytes of a message (headers and body) taken from the MTA; past it the message gets 552 5.3.4 "
                 "and no more of it is stored; 25M, 64K")
      ->transform(size_in(1, "bytes"))
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--milter-max-line", c.milter_max_line,
                 "bytes of a body line, CRLF included; a longer one gets the message 550 5.6.0")
      ->transform(size_in(1, "bytes"))
      ->check(CLI::Range(std::size_t{1000}, std::size_t{1} << 30))
      ->capture_default_str();
  app.add_option("--milter-max-headers", c.milter_max_headers,
                 "header fields of a message; past it the message gets 552 5.3.4")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
      ->capture_default_str();
  app.add_option("--milter-max-header-bytes", c.milter_max_header_bytes,
                 "bytes of a message's header fields; past it the message gets 552 5.3.4")
      ->transform(size_in(1, "bytes"))
      ->check(CLI::Range(std::size_t{1000}, std::size_t{1} << 30))
      ->capture_default_str();
  app.add_option("--milter-max-macros", c.milter_max_macros,
                 "macros (name/value pairs) held per MTA connection, all stages; past it the connection closes")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
      ->capture_default_str();
  app.add_option("--milter-max-macro-bytes", c.milter_max_macro_bytes,
                 "bytes of the macros' names and values held per MTA connection; past it the connection closes")
      ->transform(size_in(1, "bytes"))
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
      ->capture_default_str();
  app.add_option("--metrics", c.metrics, "serve Prometheus text metrics on HOST:PORT (GET /metrics), /healthz and /readyz");
  app.add_flag("--shadow", c.shadow, "shadow mode: every script's replies and message changes are logged "
               "(\"would reply ... (shadow)\") and counted, never sent; the default reply goes out");
  app.add_option("--shadow-script", c.shadow_scripts, "a script run in shadow beside the enforcing ones: it runs "
                 "first, on every event, and its replies are only logged; repeatable");
  app.add_option("--trace", c.trace, "CIDR (or address) whose sessions are logged in full: every event, every "
                 "hook with its arguments, reply and duration; repeatable")
      ->check([](const std::string& v) -> std::string {
        const auto slash = v.find('/');
        const std::string ip = v.substr(0, slash);
        unsigned char buf[16];
        const bool v4 = inet_pton(AF_INET, ip.c_str(), buf) == 1;
        if (!v4 && inet_pton(AF_INET6, ip.c_str(), buf) != 1) return "not an address or CIDR: " + v;
        if (slash == std::string::npos) return "";
        const std::string bits = v.substr(slash + 1);
        const int n = bits.empty() || bits.find_first_not_of("0123456789") != std::string::npos ? -1 : std::stoi(bits);
        if (n < 0 || n > (v4 ? 32 : 128)) return "bad prefix length in " + v;
        return "";
      });
  opts.not_a_setting(app.add_flag("--check", c.check,
                                  "check the settings (addresses, paths, certificates, limits) and load the "
                                  "scripts; one line per problem, exit 0 or 1")
                         ->configurable(false));
  opts.not_a_setting(app.add_option("--test", c.test, "run policy test case files against the scripts (no network, "
                                    "no front); one line per case, exit 0 when all pass (docs/policy-tests.md)")
                         ->configurable(false));
  app.add_option("--lua-read-dir", c.lua_read_dirs,
                 "a directory (and everything below it) scripts may read with io.open / io.lines; repeatable "
                 "[default: none: only the message file of the running hook]");
  app.add_option("--lua-write-dir", c.lua_write_dirs,
                 "a directory scripts may read, write, os.remove and os.rename inside; repeatable [default: none]");
  app.add_option("--lua-path", c.lua_path,
                 "where require finds modules: a template such as /etc/mailhook/lua/?.lua (';'-separated or "
                 "repeated) [default: none: require loads nothing from disk]")
      ->check([](const std::string& v) -> std::string {
        return v.find('?') == std::string::npos ? "--lua-path needs a '?' for the module name: " + v : "";
      });
  app.add_option("--lua-env", c.lua_env,
                 "an environment variable scripts may read with os.getenv; repeatable [default: none: os.getenv "
                 "answers nil]");
  app.add_option("--load-timeout", c.load_timeout_ms,
                 "how long loading all scripts may take (start-up, SIGHUP, --check); past it loading fails "
                 "(bare number: ms)")
      ->transform(duration_in(milliseconds(1), "milliseconds"))
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  app.add_option("--dkim-max-signatures", c.dkim_max_signatures,
                 "DKIM-Signature fields dkim.verify checks per message; the ones past it get result policy")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100}))
      ->capture_default_str();
  app.add_flag("--log-stderr", c.log_stderr, "log to stderr instead of syslog (facility mail)");
  app.add_option("--max-pending-events", c.max_pending_events,
                 "events of one gRPC stream queued for its Lua worker; past it policyd stops reading that stream "
                 "until the worker catches up (HTTP/2 flow control holds the sender)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000}))
      ->capture_default_str();
  app.add_option("--max-sessions-per-stream", c.max_sessions_per_stream,
                 "SMTP sessions open at once on one shared gRPC stream (Sessions); a front's session past it is "
                 "answered 'ended' (it tempfails or opens another stream)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
      ->capture_default_str();
  app.add_option("--tls-cert", c.tls_cert, "PEM certificate chain of the gRPC port; with --tls-key and "
                 "--tls-client-ca only peers with a client certificate of that CA open sessions [default: off]");
  app.add_option("--tls-key", c.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", c.tls_client_ca, "PEM CA certificate(s) a front's client certificate must "
                 "chain to");
  app.add_option("--log-level", c.log_level,
                 "lowest level logged: error, warning, notice (refusals and problems only), info (also one line "
                 "per session and per transaction), debug (also every hook's outcome)")
      ->check(CLI::IsMember({"error", "warning", "notice", "info", "debug"}))
      ->capture_default_str();
  app.add_option("--hook-error", c.hook_error,
                 "what a script error or malformed reply does: default (the event gets its default reply, as the "
                 "seed APIs say) or tempfail (451 4.3.0 for that event: fail closed)")
      ->check(CLI::IsMember({"default", "tempfail"}))
      ->capture_default_str();
  opts.not_a_setting(app.add_flag("--test-clock-stdin", c.test_clock_stdin,
                                  "tests only: the scripts' clock (os.time, spf/dkim's now) is set by lines on "
                                  "standard input, \"set SECONDS\" or \"advance SECONDS\" (tools/case-replay; "
                                  "docs/policy-tests.md); policyd's own timers keep the real clock")
                         ->configurable(false));
}

// What CLI11's table cannot say: options that go together, and derived
// defaults. "" when fine.
std::string finish(PolicyConfig& c, const std::string& ptr_lookup) {
  if (!(c.tls_cert.empty() && c.tls_key.empty() && c.tls_client_ca.empty()) &&
      (c.tls_cert.empty() || c.tls_key.empty() || c.tls_client_ca.empty())) {
    // TLS without client certificates would still let anyone open sessions.
    return "--tls-cert, --tls-key and --tls-client-ca go together";
  }
  c.ptr_lookup = ptr_lookup == "yes";
  c.hook_error_tempfail = c.hook_error == "tempfail";
  if (c.scripts.empty()) c.scripts.push_back("lua/policy.lua");
  if (c.workers == 0) c.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return "";
}

CLI::App make_app() {
  return CLI::App{"mailhook-policyd: runs SMTP policy written as Lua hooks for mailhook-front "
                  "(gRPC) and for MTAs through the milter protocol (--milter).",
                  "mailhook-policyd"};
}

}  // namespace

PolicyConfig parse_config(int argc, char** argv) {
  PolicyConfig c;
  std::string ptr_lookup = "yes";
  CLI::App app = make_app();
  daemon::Options opts(app, "mailhook-policyd");
  build_table(app, opts, c, ptr_lookup);
  opts.parse(argc, argv);
  if (opts.print_config_requested()) {
    std::fputs(opts.print_config().c_str(), stdout);
    std::exit(0);
  }
  if (std::string e = finish(c, ptr_lookup); !e.empty()) {
    std::fprintf(stderr, "mailhook-policyd: %s\n", e.c_str());
    std::exit(2);
  }
  c.config_file = opts.config_file();
  return c;
}

std::optional<PolicyConfig> reparse_config(int argc, char** argv, std::string& error,
                                           std::vector<std::string>& warnings) {
  PolicyConfig c;
  std::string ptr_lookup = "yes";
  CLI::App app = make_app();
  daemon::Options opts(app, "mailhook-policyd");
  build_table(app, opts, c, ptr_lookup);
  error = opts.try_parse(argc, argv);
  if (error.empty()) error = finish(c, ptr_lookup);
  if (!error.empty()) return std::nullopt;
  warnings = opts.warnings();
  c.config_file = opts.config_file();
  return c;
}

}  // namespace mailhook::policyd
