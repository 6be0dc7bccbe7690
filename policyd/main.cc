// mailhook-policyd: parse the flags, load the scripts, serve gRPC, and
// turn signals into actions (SIGHUP reload, SIGTERM/SIGINT drain). Signals
// are taken synchronously with sigwait on the main thread, so no handler
// ever runs inside Lua or gRPC code.
#include <signal.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <system_error>

#include <thread>

#include "daemon/metrics_http.h"
#include "mailcore/telemetry/log.h"
#include "policyd/config.h"
#include "policyd/lua_runtime/runtime.h"
#include "policyd/server/policy_server.h"

namespace mp = mailhook::policyd;
namespace mlog = mailhook::log;

namespace {

mp::RuntimeConfig runtime_config(const mp::PolicyConfig& c) {
  mp::RuntimeConfig r;
  for (const auto& s : c.scripts) r.scripts.emplace_back(s);
  r.workers = c.workers;
  r.hook_timeout = std::chrono::milliseconds(c.hook_timeout_ms);
  r.lua_memory_bytes = static_cast<std::size_t>(c.lua_memory_mb) << 20;
  r.spool_dir = c.spool_dir;
  r.dns_servers = c.dns_servers;
  r.dns_timeout = std::chrono::milliseconds(c.dns_timeout_ms);
  r.ptr_lookup = c.ptr_lookup;
  return r;
}

// --spool-dir, or a fresh private directory under $TMPDIR.
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
    mlog::error("cannot create --spool-dir {}: {}", r.spool_dir.string(), ec.message());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const mp::PolicyConfig config = mp::parse_config(argc, argv);
  mlog::init("mailhook-policyd", config.log_stderr || config.check);
  mp::RuntimeConfig rc = runtime_config(config);

  if (config.check) {
    const std::string error = mp::Runtime::check(rc);
    if (!error.empty()) {
      std::fprintf(stderr, "mailhook-policyd: %s\n", error.c_str());
      return 1;
    }
    std::fprintf(stderr, "mailhook-policyd: %zu script(s) OK\n", rc.scripts.size());
    return 0;
  }

  // Block the signals before any thread starts, so all threads inherit the
  // mask and only sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (!prepare_spool_dir(rc)) return 1;
  mailhook::telemetry::Registry registry;
  rc.registry = &registry;
  std::string error;
  std::unique_ptr<mp::Runtime> runtime = mp::Runtime::create(rc, error);
  if (!runtime) {
    mlog::error("cannot start: {}", error);
    if (!config.log_stderr) std::fprintf(stderr, "mailhook-policyd: cannot start: %s\n", error.c_str());
    return 1;
  }
  mp::PolicyServer server(*runtime);
  if (std::string e = server.start(config.listen); !e.empty()) {
    mlog::error("cannot start: {}", e);
    if (!config.log_stderr) std::fprintf(stderr, "mailhook-policyd: cannot start: %s\n", e.c_str());
    return 1;
  }
  // --metrics: a small loop of its own; scrapes never touch a worker.
  asio::io_context metrics_io(1);
  mailhook::daemon::MetricsEndpoint metrics(metrics_io, registry);
  std::thread metrics_thread;
  if (!config.metrics.empty()) {
    if (std::string e = metrics.start(config.metrics); !e.empty()) {
      mlog::error("cannot start: {}", e);
      if (!config.log_stderr) std::fprintf(stderr, "mailhook-policyd: %s\n", e.c_str());
      return 1;
    }
    metrics_thread = std::thread([&] { metrics_io.run(); });
  }
  mlog::notice("listening on {} with {} worker(s), scripts: {}", config.listen, rc.workers,
              fmt::join(config.scripts, ", "));

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      const std::string e = runtime->reload();
      if (e.empty()) {
        mlog::notice("reload: new sessions use the new scripts");
      } else {
        mlog::error("reload failed, keeping the old scripts: {}", e);
      }
      continue;
    }
    mlog::notice("{}: no new sessions; draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    server.drain(std::chrono::seconds(config.drain_timeout_s));
    runtime->stop();
    asio::post(metrics_io, [&] { metrics.stop(); });
    if (metrics_thread.joinable()) metrics_thread.join();
    mlog::notice("stopped");
    return 0;
  }
}
