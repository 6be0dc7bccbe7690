// mailhook-front: parse the flags, connect the policy channel, accept SMTP
// connections on --threads I/O threads (one io_context each, so a
// connection's coroutine never needs a strand), stop on SIGINT/SIGTERM.
#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <csignal>
#include <functional>
#include <thread>
#include <vector>

#include "frontend/check.h"
#include "frontend/config.h"
#include "frontend/policy_client/grpc_policy_session.h"
#include "frontend/policy_client/policy_channel.h"
#include "frontend/policy_client/policy_readiness.h"
#include "frontend/policy_client/session_mux.h"
#include "frontend/server/connection.h"
#include "daemon/accept_backoff.h"
#include "daemon/metrics_http.h"
#include "daemon/memory_trim.h"
#include "daemon/process_setup.h"
#include "daemon/service_notify.h"
#include "mailcore/telemetry/log.h"

namespace mf = mailhook::front;
namespace mlog = mailhook::log;
using asio::ip::tcp;

namespace {

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, std::vector<std::unique_ptr<asio::io_context>>& ios,
                                  mf::FrontContext& ctx) {
  std::size_t next = 0;
  mailhook::daemon::AcceptBackoff backoff("smtp " + ctx.config.listen);
  asio::steady_timer pause(acceptor.get_executor());
  for (;;) {
    asio::io_context& io = *ios[next++ % ios.size()];
    asio::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(io, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      // Out of descriptors (EMFILE) and the like: wait, never spin.
      pause.expires_after(backoff.failed(ec));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!acceptor.is_open()) co_return;
      continue;
    }
    backoff.succeeded();
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(io, mf::serve_connection(std::move(socket), ctx), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        mlog::error("bug: connection ended by exception: {}", ex.what());
      }
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  const mf::FrontConfig config = mf::parse_config(argc, argv);
  if (config.check) return mf::check_config(config);
  mlog::init("mailhook-front", config.log_stderr, *mlog::parse_level(config.log_level));
  // Each session holds its client socket and, while relaying, one to the smart host.
  mailhook::daemon::raise_open_files_limit(2 * static_cast<std::uint64_t>(config.max_connections) + 64);
  mailhook::daemon::disable_lock_order_checks();
  std::signal(SIGPIPE, SIG_IGN);

  std::string host, port;
  mf::SmartHostConfig smart{.helo_name = config.hostname};
  if (!config.smart_host.empty() && !mf::parse_host_port(config.smart_host, smart.host, smart.port)) {
    std::fprintf(stderr, "mailhook-front: --smart-host: expected HOST:PORT, got '%s'\n", config.smart_host.c_str());
    return 2;
  }
  if (!mf::parse_host_port(config.listen, host, port)) {
    std::fprintf(stderr, "mailhook-front: --listen: expected HOST:PORT, got '%s'\n", config.listen.c_str());
    return 2;
  }
  std::string channel_error;
  auto channel = mf::policy_channel(
      config.policyd, {config.policyd_tls_ca, config.policyd_tls_cert, config.policyd_tls_key}, channel_error);
  if (!channel) {
    std::fprintf(stderr, "mailhook-front: %s\n", channel_error.c_str());
    return 1;
  }
  auto stub = mailhook::v1::Policy::NewStub(channel);
  mf::GrpcPolicyLink call_link(*stub, config.policyd, std::chrono::milliseconds(config.policy_timeout_ms));
  // --policy-streams: sessions share long-lived streams (session_mux.h).
  std::unique_ptr<mf::SessionMux> mux;
  if (config.policy_streams > 0) {
    mux = std::make_unique<mf::SessionMux>(
        *stub, config.policyd, std::chrono::milliseconds(config.policy_timeout_ms),
        mf::SessionMuxOptions{.streams = config.policy_streams,
                              .stream_age = std::chrono::seconds(config.policy_stream_age_s)},
        call_link);
  }
  mf::PolicyLink& policy_link = mux ? static_cast<mf::PolicyLink&>(*mux) : call_link;
  std::unique_ptr<asio::ssl::context> tls;
  if (!config.tls_cert.empty()) {
    tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    // TLS 1.2 and later only; no compression, no renegotiation by the client.
    tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                     asio::ssl::context::no_compression);
    asio::error_code ec;
    tls->use_certificate_chain_file(config.tls_cert, ec);
    if (!ec) tls->use_private_key_file(config.tls_key, asio::ssl::context::pem, ec);
    if (ec) {
      std::fprintf(stderr, "mailhook-front: cannot load --tls-cert/--tls-key: %s\n", ec.message().c_str());
      return 1;
    }
  }
  std::string cidr_error;
  std::optional<mf::CidrList> xclient_hosts = mf::CidrList::parse(config.xclient_hosts, cidr_error);
  if (!xclient_hosts) {
    std::fprintf(stderr, "mailhook-front: --xclient-hosts: %s\n", cidr_error.c_str());
    return 2;
  }
  mailhook::telemetry::Registry registry;
  mf::FrontMetrics metrics(registry);
  mf::FrontContext ctx{config, policy_link, mf::Spool(config.spool), smart, metrics, tls.get(), std::move(*xclient_hosts),
                       mf::ConnectionLimiter(config.max_connections, config.max_connections_per_ip,
                                             config.connection_limit_ipv6_prefix)};
  if (smart.host.empty()) {
    if (std::string e = ctx.spool.prepare(); !e.empty()) {
      std::fprintf(stderr, "mailhook-front: %s\n", e.c_str());
      return 1;
    }
  }

  std::vector<std::unique_ptr<asio::io_context>> ios;
  for (int i = 0; i < config.threads; ++i) ios.push_back(std::make_unique<asio::io_context>(1));
  asio::io_context& main_io = *ios.front();
  tcp::acceptor acceptor(main_io);
  mailhook::daemon::MetricsEndpoint metrics_endpoint(main_io, registry, "front");
  // /readyz: policyd's grpc.health on the policy channel, no SMTP session.
  metrics_endpoint.set_readiness(mf::policy_readiness(channel, config.policyd));
  try {
    tcp::resolver resolver(main_io);
    // A name such as localhost is looked up once, here (--check does too).
    const tcp::endpoint ep = *resolver.resolve(host, port).begin();
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(1024);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mailhook-front: cannot listen on %s: %s\n", config.listen.c_str(), e.what());
    return 1;
  }
  // SIGTERM/SIGINT: no new connections; idle sessions get 421 4.3.2,
  // transactions in flight get --shutdown-grace to finish; then stop.
  asio::signal_set signals(main_io, SIGINT, SIGTERM);
  asio::signal_set hangup(main_io, SIGHUP);
  asio::steady_timer drain_timer(main_io);
  const auto grace_end = [&] { return std::chrono::steady_clock::now() + std::chrono::seconds(config.shutdown_grace_s); };
  std::chrono::steady_clock::time_point deadline;
  std::function<void()> wait_drained = [&] {
    if (ctx.drain.open() == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (ctx.drain.open() != 0) mlog::warning("shutdown grace over: closing {} session(s)", ctx.drain.open());
      for (auto& io : ios) io->stop();
      return;
    }
    drain_timer.expires_after(std::chrono::milliseconds(20));
    drain_timer.async_wait([&](asio::error_code) { wait_drained(); });
  };
  signals.async_wait([&](asio::error_code, int sig) {
    mlog::notice("{}: no new connections; draining {} session(s), up to {}s", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                 ctx.drain.open(), config.shutdown_grace_s);
    asio::error_code ec;
    acceptor.close(ec);
    hangup.cancel(ec);
    metrics_endpoint.stop();
    mailhook::daemon::notify_stopping();
    deadline = grace_end();
    ctx.drain.start();
    wait_drained();
  });
  // SIGHUP: the front has nothing it can reload in place (its settings
  // are sockets, threads and limits). Say so instead of dying of the
  // default action when an admin or `systemctl reload` sends it.
  std::function<void()> on_hangup = [&] {
    hangup.async_wait([&](asio::error_code ec, int) {
      if (ec) return;
      mlog::notice("SIGHUP: mailhook-front has no settings to reload; restart it to apply a changed --config{}",
                   config.config_file.empty() ? "" : " " + config.config_file);
      on_hangup();
    });
  };
  on_hangup();
  asio::co_spawn(main_io, accept_loop(acceptor, ios, ctx), asio::detached);
  if (!config.metrics.empty()) {
    if (std::string e = metrics_endpoint.start(config.metrics); !e.empty()) {
      std::fprintf(stderr, "mailhook-front: %s\n", e.c_str());
      return 1;
    }
  }
  mlog::notice("listening on {} ({} threads), policyd {}, delivery {}", config.listen, config.threads,
               config.policyd, smart.host.empty() ? "spool " + config.spool : "smart host " + config.smart_host);
  // SIGHUP (systemctl reload): its default action would kill the front.
  // The front's settings are read once at start; a reload keeps serving.
  asio::signal_set hangups(main_io, SIGHUP);
  std::function<void()> wait_hangup = [&] {
    hangups.async_wait([&](asio::error_code ec, int) {
      if (ec) return;
      mailhook::daemon::notify_reloading();
      mlog::notice("SIGHUP: nothing to re-read; restart the front to change its flags");
      mailhook::daemon::notify_ready("serving SMTP on " + config.listen);
      wait_hangup();
    });
  };
  wait_hangup();
  mailhook::daemon::notify_ready("serving SMTP on " + config.listen);

  mailhook::daemon::MemoryTrimmer trimmer("front");
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < ios.size(); ++i) {
    threads.emplace_back([&io = *ios[i]] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
  }
  main_io.run();
  for (auto& io : ios) io->stop();
  for (auto& t : threads) t.join();
  if (ctx.spool.messages() > 0) {
    mlog::notice("spool: {} message(s) made durable in {} group commit(s)", ctx.spool.messages(), ctx.spool.commits());
  }
  mlog::notice("stopped");
  return 0;
}
