// --metrics for both daemons: a minimal HTTP/1.0 responder for Prometheus
// scrapes (GET /metrics) on an Asio io_context the caller runs. One
// short-lived coroutine per scrape, bounded in size (8 KiB head) and time
// (5 s); never blocks the thread it runs on. Lives outside mailcore, which
// stays free of Asio.
#pragma once

#include <asio.hpp>

#include <string>

#include "mailcore/telemetry/metrics.h"

namespace mailhook::daemon {

class MetricsEndpoint {
 public:
  MetricsEndpoint(asio::io_context& io, const telemetry::Registry& registry) : acceptor_(io), registry_(registry) {}

  // Binds HOST:PORT ("[::1]:9100" for IPv6) and starts serving; "" on
  // success, else a message for the operator.
  std::string start(const std::string& host_port);

  // Stops accepting scrapes (drain); safe to call twice, on the io thread.
  void stop();

  const asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  asio::ip::tcp::acceptor acceptor_;
  const telemetry::Registry& registry_;
};

}  // namespace mailhook::daemon
