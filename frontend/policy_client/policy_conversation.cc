// PolicyConversation: the deadline, the failure mode and their telemetry
// around any PolicySession (ARCHITECTURE pattern 4: one named failure
// mode, its reply texts in frontend/server/replies.h, one counter, one
// log line per trip). Never blocks; never logs a client byte unescaped.
#include "frontend/policy_client/policy_conversation.h"

#include "frontend/server/replies.h"
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
    co_return Opened{std::move(opening.capabilities), std::move(opening.decision)};
  }
  down_ = true;
  metrics_.failures.add();
  log::warning("session={} client={} policy failure at connect (mode={}): {}", id_, client, mode(), opening.failure);
  co_return Opened{Capabilities{}, failure_decision(0, "accept", replies::kPolicyDownAtConnect)};
}

// A broken or slow policyd is a policy failure: the mode of
// --policy-failure decides, and only the first failure is counted.
asio::awaitable<Decision> PolicyConversation::ask(SessionEvent event) {
  const std::uint64_t seq = event.seq;
  const std::string hook = session::hook_of(event.kind);
  if (down_) co_return failure_decision(seq, hook, replies::kPolicyDownInSession);
  const auto sent = PolicyClock::now();
  PolicyAnswer answer = co_await session_->ask(std::move(event), sent + rules_.timeout);
  if (answer.fault == PolicyFault::None) {
    metrics_.seconds.observe(std::chrono::duration<double>(PolicyClock::now() - sent).count());
    co_return std::move(answer.decision);
  }
  down_ = true;
  metrics_.failures.add();
  session_->close();
  log::warning("session={} policy failure at seq {} ({}; mode={}): {}", id_, seq,
               answer.fault == PolicyFault::OutOfOrder ? "out of order" : "down or timeout", mode(), answer.failure);
  co_return failure_decision(seq, hook, replies::kPolicyDownInSession);
}

}  // namespace mailhook::front
