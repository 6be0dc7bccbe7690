// One SMTP connection as a C++20 coroutine: reads lines, asks the
// SessionMachine what they mean, asks policyd (through a PolicySession) for
// the events the scripts listen to, writes replies in order (batched under
// pipelining), receives DATA and hands accepted mail to delivery. Knows no
// Lua; never blocks its I/O thread (the spool's committer thread does the disk writes).
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "frontend/config.h"
#include "frontend/delivery/smart_host.h"
#include "frontend/delivery/spool.h"
#include "frontend/policy_client/policy_session.h"
#include "frontend/server/front_metrics.h"
#include "mailcore/telemetry/session_id.h"
#include "frontend/server/xclient.h"

namespace mailhook::front {

// Counts connections in total and per client address (421 4.7.0 beyond);
// an IPv6 client counts by its /ipv6_prefix network
// (--connection-limit-ipv6-prefix), as one host may own a whole /64.
class ConnectionLimiter {
 public:
  ConnectionLimiter(int total, int per_ip, unsigned ipv6_prefix = 64)
      : total_limit_(total), per_ip_limit_(per_ip), ipv6_prefix_(ipv6_prefix) {}
  enum class Admission : std::uint8_t {
    Admitted,
    TotalFull,  // --max-connections
    PerIpFull,  // --max-connections-per-ip
  };
  Admission admit(const std::string& ip);
  void release(const std::string& ip);

 private:
  std::mutex mu_;
  int total_limit_, per_ip_limit_;
  unsigned ipv6_prefix_;
  int total_ = 0;
  std::map<std::string, int> per_ip_;
};

// SIGTERM: every open connection is told once, on its own executor, that
// the front is shutting down; idle ones then answer 421 4.3.2 and close,
// those inside a transaction finish it first.
class DrainRegistry {
 public:
  std::uint64_t add(asio::any_io_executor executor, std::function<void()> on_drain);
  void remove(std::uint64_t id);
  void start();
  std::size_t open();

 private:
  struct Entry {
    asio::any_io_executor executor;
    std::function<void()> on_drain;
  };
  void post_drain(std::uint64_t id, const asio::any_io_executor& executor);

  std::mutex mu_;
  std::map<std::uint64_t, Entry> entries_;
  std::uint64_t next_ = 0;
  bool draining_ = false;
};

// What every connection shares; built once by main().
struct FrontContext {
  const FrontConfig& config;
  PolicyLink& policy;           // opens each connection's policy session
  Spool spool;
  SmartHostConfig smart_host;   // host empty: spool
  FrontMetrics& metrics;
  asio::ssl::context* tls;      // nullptr: no STARTTLS
  CidrList xclient_hosts;       // who may send XCLIENT
  ConnectionLimiter limiter;
  DrainRegistry drain;
  telemetry::SessionIdSource session_ids;  // unique across fronts sharing a spool
};

// Serves one accepted connection until it closes.
asio::awaitable<void> serve_connection(asio::ip::tcp::socket socket, FrontContext& context);

}  // namespace mailhook::front
