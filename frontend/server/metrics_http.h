// --metrics: a minimal HTTP/1.0 responder for Prometheus scrapes
// (GET /metrics). One short-lived coroutine per scrape, bounded in size
// and time; never blocks the I/O thread it runs on.
#pragma once

#include <asio.hpp>

#include "mailcore/telemetry/metrics.h"

namespace mailhook::front {

asio::awaitable<void> serve_metrics(asio::ip::tcp::acceptor& acceptor, const telemetry::Registry& registry);

}  // namespace mailhook::front
