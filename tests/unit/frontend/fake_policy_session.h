// FakePolicySession: a PolicySession that answers from a script instead of
// policyd, for driving a real Connection in unit tests. Per event kind it
// decides, fails (as a transport would) or says nothing until the
// deadline; it records what the connection sent and when it closed. Events
// sent ahead (pipelining) it runs or skips as policyd does (a broken
// prediction skips the speculative ones). Test code only; never used by
// the daemons.
#pragma once

#include <asio.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "frontend/policy_client/policy_session.h"
#include "mailcore/session/reply_rules.h"

namespace mailhook::front::testing {

// What the fake does with an event that wants a decision.
struct Scripted {
  enum class Kind : std::uint8_t {
    Decide,  // answer `decision` (its seq is set to the event's)
    Fail,    // answer `fault` with `failure` at once (a broken stream)
    Silent,  // answer nothing; the deadline passes (a slow policyd)
  };
  Kind kind = Kind::Decide;
  Decision decision;
  PolicyFault fault = PolicyFault::Unavailable;
  std::string failure = "policy daemon fake unreachable: connection refused";

  static Scripted decide(Decision d) { return Scripted{.kind = Kind::Decide, .decision = std::move(d)}; }
  static Scripted fail(PolicyFault f = PolicyFault::Unavailable) { return Scripted{.kind = Kind::Fail, .fault = f}; }
  static Scripted silent() { return Scripted{.kind = Kind::Silent}; }
};

// The script and the record, shared by the link, its sessions and the
// test thread (hence the mutex: the connection runs on the io thread).
struct PolicyScript {
  // At open: the capabilities and connect decision, or a failure.
  Capabilities capabilities;
  Scripted connect = Scripted::decide(Decision::proceed(0));
  std::map<EventKind, Scripted> on;  // an event without an entry: proceed
  std::map<std::string, Scripted> on_address;  // MAIL/RCPT by address: before `on`

  std::mutex mu;
  bool batches = true;  // the transport can send ahead (capabilities.honours_speculative decides too)
  std::vector<SessionEvent> asked;     // every event a "script" ran on (asked or sent ahead), in order
  std::vector<std::vector<SessionEvent>> frames;  // every send_ahead batch, as sent
  int skipped = 0;                     // events sent ahead that were skipped
  std::vector<SessionEvent> notified;  // every notify, in order
  // For each ask: how far its deadline lay beyond the moment it was asked.
  std::vector<std::chrono::milliseconds> ask_budgets;
  bool opened = false, closed = false, aborted = false;
  int after_fault_calls = 0;  // asks or notifies that reached a finished session

  std::vector<EventKind> asked_kinds() {
    std::lock_guard l(mu);
    std::vector<EventKind> out;
    for (const SessionEvent& e : asked) out.push_back(e.kind);
    return out;
  }
};

class FakePolicySession final : public PolicySession {
 public:
  FakePolicySession(std::shared_ptr<PolicyScript> script, asio::any_io_executor executor)
      : script_(std::move(script)), timer_(executor) {}

  asio::awaitable<PolicyOpening> open(SessionStart, PolicyClock::time_point deadline) override {
    {
      std::lock_guard l(script_->mu);
      script_->opened = true;
    }
    PolicyOpening o;
    const Scripted s = script_->connect;
    co_await play(s, deadline, o.fault, o.failure, o.decision);
    if (o.fault == PolicyFault::None) o.capabilities = script_->capabilities;
    co_return o;
  }

  asio::awaitable<PolicyAnswer> ask(SessionEvent event, PolicyClock::time_point deadline) override {
    co_return co_await run(std::move(event), deadline);
  }

  bool batches() const override {
    std::lock_guard l(script_->mu);
    return script_->batches && !finished_;
  }
  void send_ahead(std::vector<SessionEvent> events) override {
    std::lock_guard l(script_->mu);
    script_->frames.push_back(events);
    for (SessionEvent& e : events) ahead_.push_back(std::move(e));
  }
  asio::awaitable<PolicyAnswer> decision(std::uint64_t seq, PolicyClock::time_point deadline) override {
    if (ahead_.empty() || ahead_.front().seq != seq) {
      finished_ = true;
      co_return PolicyAnswer{.fault = PolicyFault::OutOfOrder, .failure = "fake: no such event sent ahead"};
    }
    SessionEvent e = std::move(ahead_.front());
    ahead_.pop_front();
    if (e.speculative && broken_) {
      std::lock_guard l(script_->mu);
      ++script_->skipped;
      PolicyAnswer a;
      a.decision = Decision::proceed(seq);
      a.decision.skipped = true;
      co_return a;
    }
    co_return co_await run(std::move(e), deadline);
  }

 private:
  // What policyd does with one event it runs: the scripted answer, and
  // the prediction chain (a non-speculative event starts it afresh).
  asio::awaitable<PolicyAnswer> run(SessionEvent event, PolicyClock::time_point deadline) {
    if (!event.speculative) broken_ = false;
    const auto now = PolicyClock::now();
    Scripted s;
    {
      std::lock_guard l(script_->mu);
      if (finished_) ++script_->after_fault_calls;
      script_->ask_budgets.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
      script_->asked.push_back(event);
      auto it = script_->on.find(event.kind);
      s = it == script_->on.end() ? Scripted::decide(Decision::proceed(0)) : it->second;
      if (auto a = script_->on_address.find(event.address);
          (event.kind == EventKind::Mail || event.kind == EventKind::Rcpt) && a != script_->on_address.end()) {
        s = a->second;
      }
    }
    PolicyAnswer a;
    co_await play(s, deadline, a.fault, a.failure, a.decision);
    a.decision.seq = event.seq;
    finished_ = a.fault != PolicyFault::None;
    if (a.fault == PolicyFault::None && !session::keeps_prediction(event, a.decision)) broken_ = true;
    co_return a;
  }

 public:

  void notify(SessionEvent event) override {
    std::lock_guard l(script_->mu);
    if (finished_) ++script_->after_fault_calls;
    script_->notified.push_back(std::move(event));
  }
  void close() override {
    std::lock_guard l(script_->mu);
    script_->closed = true;
  }
  void abort() override {
    std::lock_guard l(script_->mu);
    script_->aborted = true;
  }

 private:
  asio::awaitable<void> play(const Scripted& s, PolicyClock::time_point deadline, PolicyFault& fault,
                             std::string& failure, Decision& decision) {
    switch (s.kind) {
      case Scripted::Kind::Decide:
        decision = s.decision;
        co_return;
      case Scripted::Kind::Fail:
        fault = s.fault;
        failure = s.failure;
        co_return;
      case Scripted::Kind::Silent: {
        timer_.expires_at(deadline);
        asio::error_code ec;
        co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        fault = PolicyFault::Unavailable;
        failure = "policy daemon fake gave no answer within --policy-timeout";
        co_return;
      }
    }
  }

  std::shared_ptr<PolicyScript> script_;
  asio::steady_timer timer_;
  bool finished_ = false;
  std::deque<SessionEvent> ahead_;  // sent, not yet answered
  bool broken_ = false;             // a decision broke the prediction
};

class FakePolicyLink final : public PolicyLink {
 public:
  explicit FakePolicyLink(std::shared_ptr<PolicyScript> script) : script_(std::move(script)) {}
  std::unique_ptr<PolicySession> session(asio::any_io_executor executor) override {
    return std::make_unique<FakePolicySession>(script_, std::move(executor));
  }

 private:
  std::shared_ptr<PolicyScript> script_;
};

}  // namespace mailhook::front::testing
