// The milter server behind --milter (milter_adapter.h): listens, and hands
// each MTA connection to a Connection (milter_connection.h), which speaks
// the protocol (milter_codec.h). One thread accepts; each MTA connection
// then runs on the Lua worker its session is bound to, so a command, its
// hook and its reply stay on one thread.
#include "policyd/milter/milter_adapter.h"

#include <asio.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "mailcore/telemetry/log.h"
#include "policyd/milter/milter_connection.h"

namespace mailhook::policyd::milter {
namespace {

using asio::generic::stream_protocol;

// The connections' shared part, plus the acceptor and its thread.
struct Server final : ConnectionHost {
  asio::io_context io{1};  // the acceptor's
  std::optional<asio::basic_socket_acceptor<stream_protocol>> acceptor;
  std::thread thread;
};

Server* g_server = nullptr;

asio::awaitable<void> accept_loop(Server& s) {
  for (;;) {
    std::error_code ec;
    stream_protocol::socket socket = co_await s.acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (!s.acceptor->is_open() || ec == asio::error::operation_aborted) co_return;
      log::warning("milter: accept: {}", ec.message());
      continue;
    }
    if (s.stopping) continue;
    // The connection moves to the worker that will run its session.
    const std::size_t worker = s.runtime->least_busy_worker();
    const stream_protocol protocol = socket.local_endpoint(ec).protocol();
    stream_protocol::socket moved(s.runtime->worker_executor(worker));
    if (!ec) moved.assign(protocol, socket.release(ec), ec);
    if (ec) {
      log::warning("milter: cannot hand a connection to a worker: {}", ec.message());
      continue;
    }
    auto c = std::make_shared<Connection>(s, worker, std::move(moved));
    {
      std::lock_guard l(s.mu);
      s.connections.emplace(c.get(), c);
    }
    asio::co_spawn(c->executor(), [c]() { return c->run(); }, asio::detached);
  }
}

// "inet:PORT@HOST", "inet6:PORT@HOST", "unix:PATH" / "local:PATH" (and a
// bare path) as an endpoint; "" or why not.
std::string endpoint_of(const std::string& spec, stream_protocol::endpoint& out, std::string& unix_path) {
  const std::size_t colon = spec.find(':');
  const std::string kind = colon == std::string::npos ? "unix" : spec.substr(0, colon);
  const std::string rest = colon == std::string::npos ? spec : spec.substr(colon + 1);
  if (kind == "unix" || kind == "local") {
    if (rest.empty() || rest.size() >= 108) return "a unix socket path of 1 to 107 bytes";
    out = asio::local::stream_protocol::endpoint(rest);
    unix_path = rest;
    return "";
  }
  if (kind != "inet" && kind != "inet6") return "expected inet:PORT@HOST, inet6:PORT@HOST or unix:PATH";
  const std::size_t at = rest.find('@');
  const std::string port = rest.substr(0, at);
  std::string host = at == std::string::npos ? (kind == "inet6" ? "::" : "0.0.0.0") : rest.substr(at + 1);
  if (host == "*" || host.empty()) host = kind == "inet6" ? "::" : "0.0.0.0";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 1 || p > 65535) return "the port must be 1 to 65535";
  std::error_code ec;
  asio::ip::address a = asio::ip::make_address(host, ec);
  if (ec) {  // a name such as localhost: looked up once, at start
    asio::io_context io;
    asio::ip::tcp::resolver r(io);
    const auto found = r.resolve(kind == "inet6" ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), host, port, ec);
    if (ec || found.empty()) return "cannot resolve " + host;
    a = found.begin()->endpoint().address();
  }
  out = asio::ip::tcp::endpoint(a, static_cast<unsigned short>(p));
  return "";
}

}  // namespace

std::string start_milter(Runtime& runtime, const MilterConfig& config) {
  auto s = std::make_unique<Server>();
  s->runtime = &runtime;
  s->config = config;
  stream_protocol::endpoint ep;
  std::string unix_path;
  if (std::string e = endpoint_of(config.socket, ep, unix_path); !e.empty()) return "--milter " + config.socket + ": " + e;
  if (!unix_path.empty()) {
    std::error_code ec;
    if (std::filesystem::is_socket(unix_path, ec)) std::filesystem::remove(unix_path, ec);  // a stale socket
  }
  std::error_code ec;
  s->acceptor.emplace(s->io);
  s->acceptor->open(ep.protocol(), ec);
  if (!ec && unix_path.empty()) s->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s->acceptor->bind(ep, ec);
  if (!ec) s->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return "--milter " + config.socket + ": cannot listen: " + ec.message();
  asio::co_spawn(s->io, accept_loop(*s), asio::detached);
  Server* raw = s.release();
  g_server = raw;
  raw->thread = std::thread([raw] { raw->io.run(); });
  return "";
}

void stop_accepting() {
  Server* s = g_server;
  if (!s) return;
  asio::post(s->io, [s] {
    std::error_code ec;
    s->acceptor->close(ec);
  });
}

void stop_milter() {
  Server* s = g_server;
  if (!s) return;
  s->stopping = true;
  stop_accepting();
  s->thread.join();  // the acceptor is closed: its loop has nothing left
  std::unique_lock l(s->mu);
  for (auto& [raw, weak] : s->connections) {
    if (auto c = weak.lock()) asio::post(c->executor(), [c] { c->stop(); });
  }
  // Each answers what it waits on (tempfail) and closes; the workers still
  // run. Bounded: a worker stuck in a hook has --hook-timeout.
  s->ended.wait_for(l, std::chrono::seconds(10), [s] { return s->connections.empty(); });
}

}  // namespace mailhook::policyd::milter
