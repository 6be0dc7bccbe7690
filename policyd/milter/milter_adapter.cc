// The milter server behind --milter (milter_adapter.h): listens, and hands
// each MTA connection to a Connection (milter_connection.h), which speaks
// the protocol (milter_codec.h). One thread accepts; each MTA connection
// then runs on the Lua worker its session is bound to, so a command, its
// hook and its reply stay on one thread.
#include "policyd/milter/milter_adapter.h"

#include <asio.hpp>
#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/accept_backoff.h"
#include "daemon/rate_limited_log.h"
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
  daemon::AcceptBackoff backoff("milter");
  daemon::RateLimitedLog too_many;
  asio::steady_timer pause(s.io);
  for (;;) {
    std::error_code ec;
    stream_protocol::socket socket = co_await s.acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (!s.acceptor->is_open() || ec == asio::error::operation_aborted) co_return;
      // Out of file descriptors (EMFILE, ENFILE) or memory: the pending
      // connection stays in the backlog and accept fails again at once,
      // so wait before trying again, never spin (daemon/accept_backoff.h).
      s.tripped("accept");
      pause.expires_after(backoff.failed(ec));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    backoff.succeeded();
    if (s.stopping) continue;
    std::size_t open = 0;
    {
      std::lock_guard l(s.mu);
      open = s.connections.size();
    }
    if (open >= s.config.max_connections) {
      // Closed at once: the MTA applies its milter_default_action (tempfail).
      too_many.warning("milter: {} MTA connections open (--milter-max-connections {}); closing a new one", open,
                       s.config.max_connections);
      s.tripped("--milter-max-connections");
      socket.close(ec);
      continue;
    }
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
      s.connections_total->add();
      s.connections_open->add(1);
    }
    asio::co_spawn(c->executor(), [c]() { return c->run(); }, asio::detached);
  }
}

// "inet:PORT@HOST", "inet6:PORT@HOST", "unix:PATH" / "local:PATH" as an
// endpoint; "" or why not. A spec without its kind is an error, not a
// socket file named after it in the working directory.
std::string endpoint_of(const std::string& spec, stream_protocol::endpoint& out, std::string& unix_path) {
  const std::size_t colon = spec.find(':');
  if (colon == std::string::npos) return "expected inet:PORT@HOST, inet6:PORT@HOST or unix:PATH";
  const std::string kind = spec.substr(0, colon);
  const std::string rest = spec.substr(colon + 1);
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

// A unix socket at `path` that a live server answers on must not be
// taken over (a second policyd would steal the first one's MTA); one that
// nobody answers on is left from a process that died and is replaced.
std::string clear_stale_socket(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_socket(path, ec)) return "";  // nothing there, or not a socket: bind says
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const bool live = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  const int why = errno;
  ::close(fd);
  if (live) return "something already answers on " + path + " (another policyd?); not taking it over";
  // Only a refusal proves nobody listens; denied access proves nothing.
  if (why != ECONNREFUSED) return "cannot tell whether " + path + " is in use: " + std::strerror(why);
  std::filesystem::remove(path, ec);
  return "";
}

}  // namespace

MilterConfig config_of(const PolicyConfig& c) {
  MilterConfig m;
  m.socket = c.milter;
  m.timeout_s = c.milter_timeout_s;
  m.max_packet = c.milter_max_packet;
  m.max_connections = c.milter_max_connections;
  m.socket_mode = static_cast<unsigned>(std::strtoul(c.milter_socket_mode.c_str(), nullptr, 8)) & 0777;
  m.limits.max_macros = c.milter_max_macros;
  m.limits.max_macro_bytes = c.milter_max_macro_bytes;
  m.limits.max_message_size = c.milter_max_message_size;
  m.limits.max_line = c.milter_max_line;
  m.limits.max_headers = c.milter_max_headers;
  m.limits.max_header_bytes = c.milter_max_header_bytes;
  return m;
}

std::string start_milter(Runtime& runtime, const MilterConfig& config) {
  auto s = std::make_unique<Server>();
  s->runtime = &runtime;
  s->config = config;
  telemetry::Registry& metrics = config.registry ? *config.registry : s->own_registry;
  for (const char* flag : {"--milter-max-connections", "--milter-timeout", "--milter-max-packet", "--milter-max-macros",
                           "--milter-max-macro-bytes", "--milter-max-message-size", "--milter-max-line",
                           "--milter-max-headers", "--milter-max-header-bytes", "accept"}) {
    s->trips[flag] = &metrics.counter("mailhook_policyd_milter_limit_trips_total",
                                      "MTA connections closed or messages refused at a --milter-* limit, by flag "
                                      "(accept: accept failed, e.g. out of file descriptors)",
                                      std::string("flag=\"") + flag + "\"");
  }
  s->connections_total = &metrics.counter("mailhook_policyd_milter_connections_total",
                                          "MTA connections accepted and served (milter)");
  s->connections_open = &metrics.gauge("mailhook_policyd_milter_connections_open", "MTA connections open now (milter)");
  stream_protocol::endpoint ep;
  std::string unix_path;
  if (std::string e = endpoint_of(config.socket, ep, unix_path); !e.empty()) return "--milter " + config.socket + ": " + e;
  if (!unix_path.empty()) {
    if (std::string e = clear_stale_socket(unix_path); !e.empty()) return "--milter " + config.socket + ": " + e;
  }
  std::error_code ec;
  s->acceptor.emplace(s->io);
  s->acceptor->open(ep.protocol(), ec);
  // SO_REUSEADDR lets a restart bind past TIME_WAIT; it never lets two
  // listeners share the port on Linux (that would be SO_REUSEPORT).
  if (!ec && unix_path.empty()) s->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && !unix_path.empty()) {
    // The socket file is born with --milter-socket-mode at most (no moment
    // with the process umask's wider mode), then set to it exactly.
    const mode_t old = ::umask(static_cast<mode_t>(~config.socket_mode & 0777));
    s->acceptor->bind(ep, ec);
    ::umask(old);
    if (!ec && ::chmod(unix_path.c_str(), static_cast<mode_t>(config.socket_mode)) != 0) {
      ec = std::error_code(errno, std::generic_category());
    }
  } else if (!ec) {
    s->acceptor->bind(ep, ec);
  }
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
