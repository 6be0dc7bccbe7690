// --metrics for both daemons: a minimal HTTP/1.0 responder on an Asio
// io_context the caller runs, for Prometheus scrapes (GET or HEAD
// /metrics) and for probes: /healthz (liveness: this loop answers) and
// /readyz (readiness: the daemon's own check, never a policy run). One
// short-lived coroutine per request, bounded in size (8 KiB head) and
// time (5 s); never blocks the thread it runs on. Lives outside mailcore,
// which stays free of Asio.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "mailcore/telemetry/metrics.h"

namespace mailhook::daemon {

// A readiness check: calls `done` exactly once, from any thread, with ""
// when ready or why not. It must not block; the endpoint waits for `done`
// at most kReadinessTimeout and answers 503 past it.
using ReadinessCheck = std::function<void(std::function<void(std::string)> done)>;
constexpr std::chrono::seconds kReadinessTimeout{3};

class MetricsEndpoint {
 public:
  // `daemon`: "front" or "policyd" (mailhook_build_info's label).
  MetricsEndpoint(asio::io_context& io, const telemetry::Registry& registry, std::string daemon)
      : acceptor_(io), registry_(registry), daemon_(std::move(daemon)) {}

  // /readyz answers 200 only when `check` says ready; without one, 200.
  // Before start().
  void set_readiness(ReadinessCheck check) { readiness_ = std::make_shared<ReadinessCheck>(std::move(check)); }

  // Binds HOST:PORT ("[::1]:9100" for IPv6) and starts serving; "" on
  // success, else a message for the operator.
  std::string start(const std::string& host_port);

  // Stops accepting scrapes (drain); safe to call twice, on the io thread.
  void stop();

  const asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  asio::ip::tcp::acceptor acceptor_;
  const telemetry::Registry& registry_;
  std::string daemon_;
  std::shared_ptr<ReadinessCheck> readiness_;
};

}  // namespace mailhook::daemon
