// The scrape and probe endpoint: read the request head (at most 8 KiB,
// 5 s), answer GET or HEAD of /metrics, /healthz or /readyz (HEAD: the
// same headers, no body), 404 for other paths, 405 for other methods, close.
#include "daemon/metrics_http.h"

#include "daemon/accept_backoff.h"
#include "daemon/process_metrics.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

namespace mailhook::daemon {
namespace {

using asio::ip::tcp;

struct Response {
  int status = 200;
  std::string reason = "OK";
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Where a readiness answer meets the request waiting for it. The check may
// answer from any thread, after the request gave up, or never; the waiting
// coroutine marks it gone (also when its frame is destroyed with the loop),
// and then nothing is posted to the loop.
struct ReadinessWait {
  explicit ReadinessWait(const asio::any_io_executor& ex) : wake(ex) {}
  std::mutex mu;
  std::optional<std::string> answer;
  bool gone = false;
  asio::steady_timer wake;
};

struct GoneOnExit {
  std::shared_ptr<ReadinessWait> w;
  ~GoneOnExit() {
    std::lock_guard l(w->mu);
    w->gone = true;
  }
};

asio::awaitable<Response> readiness(std::shared_ptr<ReadinessCheck> check) {
  if (!check) co_return Response{.body = "ready\n"};
  auto w = std::make_shared<ReadinessWait>(co_await asio::this_coro::executor);
  GoneOnExit guard{w};
  w->wake.expires_after(kReadinessTimeout);
  (*check)([w](std::string why) {
    std::lock_guard l(w->mu);
    if (w->gone || w->answer) return;
    w->answer = std::move(why);
    asio::post(w->wake.get_executor(), [w] { w->wake.cancel(); });
  });
  for (;;) {
    {
      std::lock_guard l(w->mu);
      if (w->answer) break;
    }
    auto [ec] = co_await w->wake.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (!ec) break;  // the timeout: no answer
  }
  std::lock_guard l(w->mu);
  if (!w->answer) {
    co_return Response{503, "Service Unavailable", "text/plain; charset=utf-8", "not ready: no answer within " + std::to_string(kReadinessTimeout.count()) + " s\n"};
  }
  if (!w->answer->empty()) {
    co_return Response{503, "Service Unavailable", "text/plain; charset=utf-8", "not ready: " + *w->answer + "\n"};
  }
  co_return Response{.body = "ready\n"};
}

asio::awaitable<void> answer(tcp::socket socket, const telemetry::Registry& registry, std::string daemon,
                             std::shared_ptr<ReadinessCheck> check) {
  using namespace asio::experimental::awaitable_operators;
  constexpr auto token = asio::experimental::as_tuple(asio::use_awaitable);
  asio::steady_timer timer(socket.get_executor());
  timer.expires_after(std::chrono::seconds(5));
  std::string head;
  auto read = co_await (asio::async_read_until(socket, asio::dynamic_buffer(head, 8192), "\r\n\r\n", token) ||
                        timer.async_wait(token));
  if (read.index() != 0 || std::get<0>(std::get<0>(read))) co_return;
  // RFC 9112 3: request-line = method SP request-target SP HTTP-version.
  const std::size_t sp1 = head.find(' ');
  const std::size_t sp2 = sp1 == std::string::npos ? std::string::npos : head.find(' ', sp1 + 1);
  const std::string method = head.substr(0, sp1);
  std::string path = sp2 == std::string::npos ? "" : head.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  Response r;
  if (method != "GET" && method != "HEAD") {
    r = Response{405, "Method Not Allowed", "text/plain; charset=utf-8", "GET or HEAD only\n"};
  } else if (path == "/metrics") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = registry.render() + render_process_metrics(daemon);
  } else if (path == "/healthz") {
    r.body = "ok\n";  // this loop answered: the process is alive
  } else if (path == "/readyz") {
    r = co_await readiness(check);
  } else {
    r = Response{404, "Not Found", "text/plain; charset=utf-8", "not found\n"};
  }
  // HEAD: the headers GET would send, Content-Length included, no body (RFC 9110 9.3.2).
  std::string response = "HTTP/1.0 " + std::to_string(r.status) + " " + r.reason + "\r\nContent-Type: " +
                         r.content_type + "\r\nContent-Length: " + std::to_string(r.body.size()) +
                         "\r\nConnection: close\r\n\r\n";
  if (method != "HEAD") response += r.body;
  co_await (asio::async_write(socket, asio::buffer(response), token) || timer.async_wait(token));
}

asio::awaitable<void> serve(tcp::acceptor& acceptor, const telemetry::Registry& registry, std::string who,
                            std::string daemon, std::shared_ptr<ReadinessCheck> check) {
  AcceptBackoff backoff(std::move(who));
  asio::steady_timer pause(acceptor.get_executor());
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // EMFILE and the like: the scrape waits in the backlog; no busy loop.
      pause.expires_after(backoff.failed(ec));
      co_await pause.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      continue;
    }
    backoff.succeeded();
    asio::co_spawn(acceptor.get_executor(), answer(std::move(socket), registry, daemon, check),
                   asio::detached);
  }
}

}  // namespace

std::string MetricsEndpoint::start(const std::string& host_port) {
  const std::size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size()) {
    return "--metrics " + host_port + ": expected HOST:PORT";
  }
  std::string host = host_port.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  try {
    const tcp::endpoint ep =
        *tcp::resolver(acceptor_.get_executor()).resolve(host, host_port.substr(colon + 1), tcp::resolver::numeric_host |
                                                                                    tcp::resolver::numeric_service).begin();
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
  } catch (const std::exception& e) {
    return "cannot serve --metrics on " + host_port + ": " + e.what();
  }
  asio::co_spawn(acceptor_.get_executor(), serve(acceptor_, registry_, "metrics " + host_port, daemon_, readiness_),
                 asio::detached);
  return "";
}

void MetricsEndpoint::stop() {
  asio::error_code ec;
  acceptor_.close(ec);
}

}  // namespace mailhook::daemon
