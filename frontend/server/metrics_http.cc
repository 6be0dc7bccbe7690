// The scrape endpoint: read the request head (at most 8 KiB, 5 s), answer
// the registry's text for GET /metrics, 404 otherwise, close.
#include "frontend/server/metrics_http.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <chrono>
#include <string>

namespace mailhook::front {
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

}  // namespace

asio::awaitable<void> serve_metrics(tcp::acceptor& acceptor, const telemetry::Registry& registry) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;
    asio::co_spawn(acceptor.get_executor(), answer(std::move(socket), registry), asio::detached);
  }
}

}  // namespace mailhook::front
