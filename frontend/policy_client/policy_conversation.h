// PolicyConversation: what a Connection holds to talk to policyd. Wraps a
// PolicySession with the front's rules for a policy that fails: the
// deadline (--policy-timeout), the failure mode (--policy-failure), its
// log line and counter, and the round-trip histogram. Always yields a
// Decision, so the connection never handles a transport failure itself.
// Speaks mailcore types only; never sees gRPC.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "frontend/config.h"
#include "frontend/policy_client/policy_session.h"
#include "mailcore/telemetry/metrics.h"
#include "mailcore/util/fifo.h"

namespace mailhook::front {

// No defaults here: the flags' (frontend/config.h) are the only ones.
struct PolicyRules {
  std::chrono::milliseconds timeout{};  // --policy-timeout, per event
  PolicyFailure failure{};              // --policy-failure
  std::size_t pipeline_depth{};         // --policy-pipeline-depth: events sent ahead per ask (0: none)
};

struct PolicyMetrics {
  telemetry::Counter& failures;  // mailhook_policy_failures_total
  telemetry::Histogram& seconds;  // mailhook_front_policy_seconds
  telemetry::Counter* sent_ahead = nullptr;  // mailhook_front_policy_events_sent_ahead_total
  telemetry::Counter* skipped = nullptr;     // mailhook_front_policy_events_skipped_total
};

class PolicyConversation {
 public:
  PolicyConversation(std::unique_ptr<PolicySession> session, PolicyRules rules, PolicyMetrics metrics)
      : session_(std::move(session)), rules_(rules), metrics_(metrics) {}
  ~PolicyConversation() { session_->abort(); }  // e.g. the front stops mid-session

  // What opening gave: the capabilities and the connect decision. When
  // policyd failed: no events listened to, and a decision by the failure
  // mode (tempfail: 421 4.3.0 from script "policy_failure"; accept: proceed).
  struct Opened {
    Capabilities capabilities;
    Decision decision;
  };
  // `session_id`, `client` (escaped): for the failure's log line.
  asio::awaitable<Opened> open(SessionStart start, std::string_view client);
  // The decision on `event`; the failure mode's when policyd fails (451
  // 4.3.0 from script "policy_failure" under tempfail, proceed under accept).
  // `ahead` (RFC 2920; called with the room, --policy-pipeline-depth,
  // only when the event goes out now and policyd honours speculation;
  // session::events_ahead builds them): the events of the pipelined
  // commands that follow, sent speculatively in the same write. When
  // `event` itself was
  // sent ahead, its decision is awaited instead of asking again; events
  // sent ahead that the session did not reach as predicted, or that
  // policyd skipped, are consumed and dropped first (in order, so no
  // script ever ran them: policyd skips after a broken prediction).
  using Predict = std::function<std::vector<SessionEvent>(std::size_t room)>;
  asio::awaitable<Decision> ask(SessionEvent event, const Predict& ahead = {});
  void notify(SessionEvent event) {
    if (!down_) session_->notify(std::move(event));
  }
  void close() { session_->close(); }
  // policyd failed in this session: events are no longer sent.
  bool down() const { return down_; }

 private:
  // `tempfail`: the reply under --policy-failure tempfail (421 at connect, 451 in session).
  Decision failure_decision(std::uint64_t seq, std::string_view hook, const Reply& tempfail) const;
  // How many events ask() may send ahead now: --policy-pipeline-depth
  // when policyd honours speculative events on a batching transport, else 0.
  std::size_t ahead_room() const {
    return down_ || !honours_speculative_ || !session_->batches() ? 0 : rules_.pipeline_depth;
  }
  // A fault of the session: policyd counts as down from now on.
  Decision fail(const PolicyAnswer& answer, std::uint64_t seq, const std::string& hook);
  // Awaits and drops the decisions of every event still sent ahead; false
  // (with `fault` set) when the session failed meanwhile.
  asio::awaitable<bool> drop_ahead(PolicyAnswer& fault);
  const char* mode() const { return rules_.failure == PolicyFailure::Tempfail ? "tempfail" : "accept"; }

  std::unique_ptr<PolicySession> session_;
  PolicyRules rules_;
  PolicyMetrics metrics_;
  std::string id_;  // the SMTP session's, for log lines
  bool down_ = false;
  bool honours_speculative_ = false;  // the opening's Capabilities
  // Sent ahead, decisions to come, in order (speculative cleared). A Fifo,
  // not a std::deque: an idle session must not hold a deque's ~600 bytes.
  Fifo<SessionEvent> ahead_;
};

}  // namespace mailhook::front
