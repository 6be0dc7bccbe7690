// The scrape endpoint: read the request head (at most 8 KiB, 5 s), answer
// the registry's text for GET /metrics, 404 otherwise, close.
#include "daemon/metrics_http.h"

#include "daemon/accept_backoff.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <chrono>
#include <stdexcept>
#include <string>

namespace mailhook::daemon {
namespace {

using asio::ip::tcp;

asio::awaitable<void> answer(tcp::socket socket, const telemetry::Registry& registry) {
  using namespace asio::experimental::awaitable_operators;
  constexpr auto token = asio::experimental::as_tuple(asio::use_awaitable);
  asio::steady_timer timer(socket.get_executor());
  timer.expires_after(std::chrono::seconds(5));
  std::string head;
  auto read = co_await (asio::async_read_until(socket, asio::dynamic_buffer(head, 8192), "\r\n\r\n", token) ||
                        timer.async_wait(token));
  if (read.index() != 0 || std::get<0>(std::get<0>(read))) co_return;
  const bool ok = head.rfind("GET /metrics ", 0) == 0 || head.rfind("GET /metrics?", 0) == 0;
  const std::string body = ok ? registry.render() : "not found\n";
  const std::string response = std::string(ok ? "HTTP/1.0 200 OK\r\n" : "HTTP/1.0 404 Not Found\r\n") +
                               "Content-Type: text/plain; version=0.0.4\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  co_await (asio::async_write(socket, asio::buffer(response), token) || timer.async_wait(token));
}

asio::awaitable<void> serve(tcp::acceptor& acceptor, const telemetry::Registry& registry, std::string who) {
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
    asio::co_spawn(acceptor.get_executor(), answer(std::move(socket), registry), asio::detached);
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
        // A name such as localhost is looked up once, at start.
        *tcp::resolver(acceptor_.get_executor()).resolve(host, host_port.substr(colon + 1),
                                                         tcp::resolver::numeric_service).begin();
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
  } catch (const std::exception& e) {
    return "cannot serve --metrics on " + host_port + ": " + e.what();
  }
  asio::co_spawn(acceptor_.get_executor(), serve(acceptor_, registry_, "metrics " + host_port), asio::detached);
  return "";
}

void MetricsEndpoint::stop() {
  asio::error_code ec;
  acceptor_.close(ec);
}

}  // namespace mailhook::daemon
