// SessionMux: a PolicyLink whose sessions share a few long-lived gRPC
// Sessions streams (proto/mailhook/v1/session.proto) instead of one call
// each. gRPC round robin places each new stream on the next replica; new
// sessions go round robin over the replicas the streams reached, on one
// stream per replica (the others there stand by); a stream that
// policyd drains, or that is older than --policy-stream-age, takes no new
// session and half-closes when its last one ended. A policyd without
// Sessions (older, UNIMPLEMENTED) turns the mux into the per-call link,
// said once at warning, for --policy-stream-age: then the next new session
// tries a shared stream again (an upgraded policyd is a restarted replica,
// met on the same cadence), said once at info when it works; replicas of
// mixed versions are said to differ once, not at every flip
// (FallbackNotices). Never blocks
// a connection's thread; never decides a reply (PolicyConversation does).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "frontend/config.h"
#include "frontend/policy_client/fallback_notices.h"
#include "frontend/policy_client/policy_session.h"
#include "mailhook/v1/session.grpc.pb.h"

namespace mailhook::front {

// No defaults here: the flags' (frontend/config.h) are the only ones.
struct SessionMuxOptions {
  std::size_t streams;                 // --policy-streams: open at once
  std::chrono::seconds stream_age;     // --policy-stream-age: then replaced
};

class SessionMux final : public PolicyLink {
 public:
  // `target` (--policyd) and `timeout` (--policy-timeout) only name the
  // failure in log lines. `per_call` (one call per session) serves every
  // session once policyd said it has no Sessions RPC; it outlives the mux.
  SessionMux(v1::Policy::Stub& stub, std::string target, std::chrono::milliseconds timeout,
             SessionMuxOptions options, PolicyLink& per_call);
  ~SessionMux() override;

  std::unique_ptr<PolicySession> session(asio::any_io_executor executor) override;

  class Stream;
  class Inbox;
  // A stream that takes a new session now (opened when fewer than
  // `streams` are usable). Any thread.
  std::shared_ptr<Stream> pick();
  const std::string& target() const { return target_; }
  // New sessions go one call each for --policy-stream-age, then try a
  // shared stream again: policyd answered Sessions with UNIMPLEMENTED
  // (`why`, gRPC's words). Logged once, not again at each failed re-probe
  // nor at each flip of mixed replicas (FallbackNotices). Any thread.
  void fall_back(const std::string& why);
  // A session opened on a shared stream: if the mux had fallen back, it
  // says once that shared streams serve again (FallbackNotices). Any thread.
  void streams_serve();
  bool per_call_only() const {
    return std::chrono::steady_clock::now().time_since_epoch().count() <
           per_call_until_.load(std::memory_order_relaxed);
  }
  PolicyLink& per_call() { return per_call_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  v1::Policy::Stub& stub_;
  const std::string target_;
  const std::chrono::milliseconds timeout_;
  const SessionMuxOptions options_;
  PolicyLink& per_call_;
  // steady_clock ticks until which new sessions go one call each (0: none).
  std::atomic<std::chrono::steady_clock::rep> per_call_until_{0};
  FallbackNotices notices_{options_.stream_age};  // what fall_back / streams_serve say
  std::mutex mu_;
  std::vector<std::shared_ptr<Stream>> streams_;
  std::size_t next_ = 0;
};

}  // namespace mailhook::front
