// The Connection's side of the policy conversation: opening the policy
// session at connect (the greeting follows its decision) and the checks
// around a decision the shared rules (mailcore/session/reply_rules.h)
// apply. The transport, the deadline and the failure mode are
// frontend/policy_client's; nothing here sees gRPC or mailhook.v1.
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include "frontend/server/session_connection.h"
#include "mailcore/smtp/reply_text.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::front::detail {

asio::awaitable<bool> Connection::open_policy() {
  SessionStart start;
  start.session_id = id_;
  start.local_host = ctx_.config.hostname;
  start.client.address = address_;
  start.client.port = port_;
  facts_ = start.client;
  asio::error_code ec;
  const auto local = socket_.local_endpoint(ec);
  start.client.local_address = local.address().to_string();
  start.client.local_port = local.port();
  if (ctx_.config.greet_pause_ms > 0) {
    // RFC 5321 4.3.1: a client must wait for the greeting. Watch for one
    // that does not, for --greet-pause, without reading its bytes.
    using namespace asio::experimental::awaitable_operators;
    constexpr auto token = asio::experimental::as_tuple(asio::use_awaitable);
    timer_.expires_after(std::chrono::milliseconds(ctx_.config.greet_pause_ms));
    co_await (socket_.async_wait(tcp::socket::wait_read, token) || timer_.async_wait(token));
  }
  start.early_talker = socket_.available(ec) > 0;  // talked before the greeting (client.is_pipelining)
  facts_.local_address = start.client.local_address;
  facts_.local_port = start.client.local_port;
  start.limits = {ctx_.config.max_message_size, ctx_.config.max_recipients, 0};
  policy_.emplace(ctx_.policy.session(socket_.get_executor()),
                  PolicyRules{std::chrono::milliseconds(ctx_.config.policy_timeout_ms), ctx_.config.policy_failure,
                              ctx_.config.policy_pipeline_depth},
                  PolicyMetrics{ctx_.metrics.policy_failures, ctx_.metrics.policy_seconds,
                                &ctx_.metrics.policy_sent_ahead, &ctx_.metrics.policy_skipped});
  PolicyConversation::Opened opened = co_await policy_->open(std::move(start), client_token());
  machine_.set_listened(opened.capabilities.events);
  wants_message_ = opened.capabilities.wants_message;
  const Decision& d = opened.decision;
  log_limits(d);
  if (d.limits) machine_.set_limits(session::limits_of(*d.limits));
  const session::ChosenReply r = choose(d, Reply{220, "", {ctx_.config.hostname + " ESMTP mailhook"}});
  queue_reply(r.reply);
  if (r.close || r.reply.code >= 400) {
    if (r.reply.code >= 400) log_refusal(nullptr, "accept", d.script, r.reply);
    end_reason_ = policy_->down() ? "policy_down" : "refused";
    co_return false;
  }
  co_return true;
}

session::ChosenReply Connection::choose(const Decision& d, const Reply& fallback, bool answers_data) {
  session::ChosenReply c = session::choose_reply(d, fallback, answers_data);
  log_invalid(c);
  return c;
}

// The one warning per invalid reply (ARCHITECTURE pattern 3): the default went out.
void Connection::log_invalid(const session::ChosenReply& c) {
  if (!c.invalid.empty()) log::warning("session={} invalid reply from policyd ({}); default sent", id_, c.invalid);
}

// New limits from the policy (mailhook.limits); the rules apply them.
void Connection::log_limits(const Decision& d) {
  if (!d.limits) return;
  log::info("session={} limits from policy: max_message_size={} max_recipients={} max_line_length={}", id_,
            d.limits->max_message_size, d.limits->max_recipients, d.limits->max_line_length);
}

}  // namespace mailhook::front::detail
