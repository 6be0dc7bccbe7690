// PolicyConversation: the deadline, the failure mode and their telemetry
// around any PolicySession (ARCHITECTURE pattern 4: one named failure
// mode, its reply texts in frontend/replies.h, one counter, one
// log line per trip). Never blocks; never logs a client byte unescaped.
#include "frontend/policy_client/policy_conversation.h"

#include "frontend/replies.h"
#include "mailcore/session/reply_rules.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::front {

Decision PolicyConversation::failure_decision(std::uint64_t seq, std::string_view hook, const Reply& tempfail) const {
  if (rules_.failure == PolicyFailure::Accept) return Decision::proceed(seq);
  Decision d = Decision::respond(seq, tempfail);
  d.script = "policy_failure";  // for the refusal line
  d.hook = std::string(hook);
  return d;
}

asio::awaitable<PolicyConversation::Opened> PolicyConversation::open(SessionStart start, std::string_view client) {
  id_ = start.session_id;
  const auto deadline = PolicyClock::now() + rules_.timeout;
  PolicyOpening opening = co_await session_->open(std::move(start), deadline);
  if (opening.fault == PolicyFault::None) {
    honours_speculative_ = opening.capabilities.honours_speculative;
    co_return Opened{std::move(opening.capabilities), std::move(opening.decision)};
  }
  down_ = true;
  metrics_.failures.add();
  log::warning("session={} client={} policy failure at connect (mode={}): {}", id_, client, mode(), opening.failure);
  co_return Opened{Capabilities{}, failure_decision(0, "accept", replies::kPolicyDownAtConnect)};
}

// A broken or slow policyd is a policy failure: the mode of
// --policy-failure decides, and only the first failure is counted.
asio::awaitable<Decision> PolicyConversation::ask(SessionEvent event, const Predict& predict) {
  const std::uint64_t seq = event.seq;
  const std::string hook = session::hook_of(event.kind);
  if (down_) co_return failure_decision(seq, hook, replies::kPolicyDownInSession);
  auto sent = PolicyClock::now();
  if (!ahead_.empty() && ahead_.front() == event) {
    ahead_.pop_front();
    PolicyAnswer answer = co_await session_->decision(seq, sent + rules_.timeout);
    if (answer.fault != PolicyFault::None) co_return fail(answer, seq, hook);
    if (!answer.decision.skipped) {
      // The round trip began when the event went ahead; this is the wait left.
      metrics_.seconds.observe(std::chrono::duration<double>(PolicyClock::now() - sent).count());
      co_return std::move(answer.decision);
    }
    // An earlier decision broke the prediction, yet this command came as
    // predicted (a refused RCPT before another RCPT): ask for it now.
    if (metrics_.skipped) metrics_.skipped->add();
    sent = PolicyClock::now();
  }
  if (!ahead_.empty()) {
    PolicyAnswer fault;
    if (!co_await drop_ahead(fault)) co_return fail(fault, seq, hook);
    sent = PolicyClock::now();
  }
  std::vector<SessionEvent> ahead;
  if (const std::size_t room = ahead_room(); room > 0 && predict) ahead = predict(room);
  PolicyAnswer answer;
  if (ahead.empty()) {
    answer = co_await session_->ask(std::move(event), sent + rules_.timeout);
  } else {
    std::vector<SessionEvent> batch;
    batch.reserve(ahead.size() + 1);
    batch.push_back(std::move(event));
    for (SessionEvent& e : ahead) {
      e.speculative = true;
      batch.push_back(e);
      e.speculative = false;  // compared with the command's own event later
      ahead_.push_back(std::move(e));
    }
    if (metrics_.sent_ahead) metrics_.sent_ahead->add(batch.size() - 1);
    session_->send_ahead(std::move(batch));
    answer = co_await session_->decision(seq, sent + rules_.timeout);
  }
  if (answer.fault == PolicyFault::None) {
    metrics_.seconds.observe(std::chrono::duration<double>(PolicyClock::now() - sent).count());
    co_return std::move(answer.decision);
  }
  co_return fail(answer, seq, hook);
}

asio::awaitable<bool> PolicyConversation::drop_ahead(PolicyAnswer& fault) {
  while (!ahead_.empty()) {
    const std::uint64_t seq = ahead_.front().seq;
    ahead_.pop_front();
    PolicyAnswer answer = co_await session_->decision(seq, PolicyClock::now() + rules_.timeout);
    if (answer.fault != PolicyFault::None) {
      ahead_.clear();
      fault = std::move(answer);
      co_return false;
    }
    if (answer.decision.skipped) {
      if (metrics_.skipped) metrics_.skipped->add();
    } else {
      // policyd ran a script on an event the session did not reach: its
      // notion of an accept (keeps_prediction) differs from this front's.
      log::warning("session={} policy daemon ran event seq {} sent ahead though an earlier decision changed the "
                   "session; its decision is dropped (front and policyd disagree on keeps_prediction)",
                   id_, seq);
    }
  }
  co_return true;
}

Decision PolicyConversation::fail(const PolicyAnswer& answer, std::uint64_t seq, const std::string& hook) {
  ahead_.clear();
  down_ = true;
  metrics_.failures.add();
  session_->close();
  log::warning("session={} policy failure at seq {} ({}; mode={}): {}", id_, seq,
               answer.fault == PolicyFault::OutOfOrder ? "out of order" : "down or timeout", mode(), answer.failure);
  return failure_decision(seq, hook, replies::kPolicyDownInSession);
}

}  // namespace mailhook::front
