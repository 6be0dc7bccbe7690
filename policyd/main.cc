// mailhook-policyd: parse the flags, load the scripts, serve gRPC (and
// the milter protocol), and turn signals into actions (SIGHUP reload,
// SIGTERM/SIGINT drain). Every other thread blocks the signals; only the
// main thread takes them, in a handler that just writes the number to a
// pipe the main loop reads.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <thread>

#include "daemon/memory_trim.h"
#include "daemon/metrics_http.h"
#include "daemon/process_setup.h"
#include "daemon/service_notify.h"
#include "mailcore/telemetry/log.h"
#include "policyd/check.h"
#include "policyd/config.h"
#include "policyd/config_reload.h"
#include "policyd/lua_runtime/runtime.h"
#include "policyd/milter/milter_adapter.h"
#include "policyd/server/policy_server.h"
#include "policyd/testing/case_runner.h"
#include "policyd/testing/clock_input.h"
#include "policyd/lua_runtime/script_clock.h"

#include <iostream>

namespace mp = mailhook::policyd;
namespace mlog = mailhook::log;

namespace {

// --temp-dir, or a fresh private directory under $TMPDIR.
bool prepare_spool_dir(mp::RuntimeConfig& r) {
  std::error_code ec;
  if (r.spool_dir.empty()) {
    std::string templ = (std::filesystem::temp_directory_path(ec) / "mailhook-policyd.XXXXXX").string();
    if (!mkdtemp(templ.data())) {
      mlog::error("cannot create a temp spool dir {}: {}", templ, std::strerror(errno));
      return false;
    }
    r.spool_dir = templ;
    return true;
  }
  std::filesystem::create_directories(r.spool_dir, ec);
  if (ec) {
    mlog::error("cannot create --temp-dir {}: {}", r.spool_dir.string(), ec.message());
    return false;
  }
  return true;
}

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const int saved = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

// The next signal, from the pipe.
int next_signal() {
  for (;;) {
    unsigned char b = 0;
    const ssize_t n = read(g_signal_pipe[0], &b, 1);
    if (n == 1) return b;
    if (n < 0 && errno == EINTR) continue;
    return SIGTERM;  // the pipe broke: stop
  }
}

}  // namespace

int main(int argc, char** argv) {
  const mp::PolicyConfig config = mp::parse_config(argc, argv);
  mlog::init("mailhook-policyd", config.log_stderr || config.check || !config.test.empty(),
             *mlog::parse_level(config.log_level));
  mailhook::daemon::disable_lock_order_checks();
  mailhook::daemon::raise_open_files_limit();  // issue 19 #5: no shell limit of 1024 for a daemon
  mp::RuntimeConfig rc = mp::runtime_config_of(config);

  if (!config.test.empty()) {
    // Script logs go to stderr; the verdicts to stdout.
    if (!prepare_spool_dir(rc)) return 2;
    return mp::testing::run_case_files(config.test, rc, std::cout);
  }

  if (config.check) return mp::check_config(config, rc);

  // Block the signals before any thread starts, so all threads inherit the
  // mask; the main thread unblocks them once everything runs.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (!prepare_spool_dir(rc)) return 1;
  if (config.test_clock_stdin) {
    // tools/case-replay moves the scripts' clock as a case file's `clock:`
    // and `advance:` do under --test; only whoever holds our stdin can.
    rc.clock = std::make_shared<mp::ScriptClock>();
    mp::testing::follow_clock_input(rc.clock);
  }
  mailhook::telemetry::Registry registry;
  rc.registry = &registry;
  std::string error;
  std::unique_ptr<mp::Runtime> runtime = mp::Runtime::create(rc, error);
  if (!runtime) {
    mlog::error("cannot start: {}", error);
    if (!config.log_stderr) std::fprintf(stderr, "mailhook-policyd: cannot start: %s\n", error.c_str());
    return 1;
  }
  mp::PolicyServer server(*runtime, &registry);
  const mp::ServerOptions server_options{.listen = config.listen,
                                         .max_connection_age = std::chrono::seconds(config.max_connection_age_s),
                                         .max_pending_events = config.max_pending_events,
                                         .max_sessions_per_stream = config.max_sessions_per_stream,
                                         .tls_cert = config.tls_cert,
                                         .tls_key = config.tls_key,
                                         .tls_client_ca = config.tls_client_ca};
  if (std::string e = server.start(server_options); !e.empty()) {
    mlog::error("cannot start: {}", e);
    if (!config.log_stderr) std::fprintf(stderr, "mailhook-policyd: cannot start: %s\n", e.c_str());
    return 1;
  }
  // --metrics: a small loop of its own; scrapes never touch a worker.
  asio::io_context metrics_io(1);
  mailhook::daemon::MetricsEndpoint metrics(metrics_io, registry, "policyd");
  // /readyz: the gRPC server serves (not draining) and a Lua worker's loop
  // answers; no session, no hook.
  metrics.set_readiness([&server, rt = runtime.get()](std::function<void(std::string)> done) {
    if (!server.serving()) return done("policyd is draining (SIGTERM) or not serving");
    rt->ping_workers([done] { done(""); });
  });
  std::thread metrics_thread;
  if (!config.metrics.empty()) {
    if (std::string e = metrics.start(config.metrics); !e.empty()) {
      mlog::error("cannot start: {}", e);
      if (!config.log_stderr) std::fprintf(stderr, "mailhook-policyd: %s\n", e.c_str());
      return 1;
    }
    metrics_thread = std::thread([&] { metrics_io.run(); });
  }
  if (!config.milter.empty()) {
    mp::milter::MilterConfig milter_config = mp::milter::config_of(config);
    milter_config.registry = &registry;
    if (std::string e = mp::milter::start_milter(*runtime, milter_config); !e.empty()) {
      mlog::error("cannot start: {}", e);
      if (!config.log_stderr) std::fprintf(stderr, "mailhook-policyd: %s\n", e.c_str());
      std::_Exit(1);  // threads are running; nothing to flush but the log
    }
    mlog::notice("milter listening on {}", config.milter);
  }
  mp::ConfigReload reload(argc, argv, config, registry);
  mailhook::daemon::MemoryTrimmer trimmer("policyd");
  mlog::notice("listening on {}{} with {} worker(s), scripts: {}", config.listen,
               config.tls_cert.empty() ? " (no TLS: anyone who reaches it can open sessions)" : " (mTLS)", rc.workers,
               fmt::join(config.scripts, ", "));

  if (pipe(g_signal_pipe) != 0) {
    mlog::error("cannot start: pipe: {}", std::strerror(errno));
    std::_Exit(1);
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaction(s, &sa, nullptr);
  pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
  // Every listener is up (gRPC, milter, metrics): tell systemd (Type=notify).
  mailhook::daemon::notify_ready("serving gRPC on " + config.listen);

  for (;;) {
    const int sig = next_signal();
    if (sig == SIGHUP) {
      mailhook::daemon::notify_reloading();
      const std::string e = reload(*runtime);
      // READY=1 either way: a failed reload keeps the old scripts serving.
      mailhook::daemon::notify_ready(e.empty() ? "reloaded" : "reload failed, old scripts serving");
      continue;
    }
    mlog::notice("{}: no new sessions; draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    mailhook::daemon::notify_stopping();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(config.drain_timeout_s);
    mp::milter::stop_accepting();
    server.drain(std::chrono::seconds(config.drain_timeout_s));
    // Milter sessions finish on their own (the MTA ends them) until the
    // deadline; then waiting callbacks answer tempfail.
    while (runtime->open_sessions() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    mp::milter::stop_milter();
    runtime->stop();
    asio::post(metrics_io, [&] { metrics.stop(); });
    if (metrics_thread.joinable()) metrics_thread.join();
    mlog::notice("stopped");
    return 0;
  }
}
