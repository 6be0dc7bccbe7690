// MuxSession's conversation: opening on a shared stream (retried on
// another stream when one breaks before policyd answered, or handed to the
// per-call link when policyd has no Sessions RPC), asks matched by seq,
// and the session's end. Never holds client bytes in a failure text.
#include "frontend/policy_client/mux_session.h"

#include "frontend/policy_client/mux_stream.h"
#include "mailcore/telemetry/log.h"
#include "mailcore/wire/convert.h"

namespace mailhook::front {
namespace {

// Streams tried per session before policyd counts as down at connect.
constexpr int kOpenAttempts = 3;

}  // namespace

asio::awaitable<PolicyOpening> MuxSession::open(SessionStart start, PolicyClock::time_point deadline) {
  if (mux_.per_call_only()) {
    per_call_ = mux_.per_call().session(executor_);
    co_return co_await per_call_->open(std::move(start), deadline);
  }
  v1::FrontTagged first;
  wire::to_proto(start, first.mutable_start());
  PolicyOpening opening;
  std::optional<v1::PolicyTagged> m;
  std::shared_ptr<SessionMux::Stream> last;  // the stream tried last
  // A stream that breaks before policyd opened the session (a replica
  // that just died) is tried again on another: nothing was said to the
  // client yet. A slow policyd is not retried: the deadline covers all.
  for (int attempt = 0; attempt < kOpenAttempts && !m; ++attempt) {
    std::shared_ptr<SessionMux::Stream> stream = mux_.pick();
    last = stream;
    auto inbox = std::make_shared<SessionMux::Inbox>(executor_, stream);
    const std::uint64_t id = stream->attach(inbox);
    if (id == 0) {  // it broke since pick()
      broke_ = stream->failure();
      if (stream->unimplemented()) break;
      continue;
    }
    inbox_ = std::move(inbox);
    inbox_->set_id(id);
    inbox_->send(first);
    m = co_await inbox_->next(deadline);
    if (!m && !inbox_->is_broken()) break;  // the deadline passed
    if (!m) broke_ = inbox_->failure();
    if (!m && stream->unimplemented()) break;
  }
  if (!m && !broke_.empty() && last && last->unimplemented()) {
    // An older policyd: this session, and every new one for
    // --policy-stream-age, goes one call each (nothing was said to the
    // client yet).
    mux_.fall_back(broke_);
    inbox_.reset();
    broke_.clear();
    per_call_ = mux_.per_call().session(executor_);
    co_return co_await per_call_->open(std::move(start), deadline);
  }
  if (m && m->has_opened()) {
    broke_.clear();  // an earlier attempt's; this stream serves
    mux_.streams_serve();
    opening.capabilities = wire::from_proto(m->opened().capabilities());
    opening.decision = wire::from_proto(m->opened().decision());
    co_return opening;
  }
  fault_ = opening.fault = PolicyFault::Unavailable;
  failure_ = failure_text(m);
  opening.failure = failure_;
  if (inbox_) inbox_->send(end_message(), true);
  co_return opening;
}

asio::awaitable<PolicyAnswer> MuxSession::ask(SessionEvent event, PolicyClock::time_point deadline) {
  if (per_call_) co_return co_await per_call_->ask(std::move(event), deadline);
  PolicyAnswer answer;
  if (fault_ != PolicyFault::None || !inbox_) {
    answer.fault = fault_ == PolicyFault::None ? PolicyFault::Unavailable : fault_;
    answer.failure = failure_;
    co_return answer;
  }
  const std::uint64_t seq = event.seq;
  notify(std::move(event));
  co_return co_await decision(seq, deadline);
}

void MuxSession::send_ahead(std::vector<SessionEvent> events) {
  if (per_call_ || fault_ != PolicyFault::None || !inbox_ || closed_) return;
  std::vector<v1::FrontTagged> batch(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) wire::to_proto(std::move(events[i]), batch[i].mutable_event());
  inbox_->send(std::move(batch));
}

asio::awaitable<PolicyAnswer> MuxSession::decision(std::uint64_t seq, PolicyClock::time_point deadline) {
  PolicyAnswer answer;
  if (fault_ != PolicyFault::None || !inbox_) {
    answer.fault = fault_ == PolicyFault::None ? PolicyFault::Unavailable : fault_;
    answer.failure = failure_;
    co_return answer;
  }
  std::optional<v1::PolicyTagged> m = co_await inbox_->next(deadline);
  if (m && m->has_decision() && m->decision().seq() == seq) {
    answer.decision = wire::from_proto(m->decision());
    co_return answer;
  }
  fault_ = m && m->has_decision() ? PolicyFault::OutOfOrder : PolicyFault::Unavailable;
  failure_ = fault_ == PolicyFault::OutOfOrder
                 ? "policy daemon " + log::escape_text(mux_.target()) + " answered out of order"
                 : failure_text(m);
  inbox_->send(end_message(), true);
  answer.fault = fault_;
  answer.failure = failure_;
  co_return answer;
}

void MuxSession::notify(SessionEvent event) {
  if (per_call_) return per_call_->notify(std::move(event));
  if (fault_ != PolicyFault::None || !inbox_ || closed_) return;
  v1::FrontTagged m;
  wire::to_proto(std::move(event), m.mutable_event());
  inbox_->send(std::move(m));
}

void MuxSession::close() {
  if (per_call_) return per_call_->close();
  if (!inbox_ || closed_) return;
  closed_ = true;
  inbox_->send(end_message());
}

void MuxSession::abort() {
  if (per_call_) return per_call_->abort();
  if (!inbox_ || closed_) return;
  closed_ = true;
  inbox_->send(end_message(), true);
}

v1::FrontTagged MuxSession::end_message() {
  v1::FrontTagged m;
  m.mutable_end();
  return m;
}

std::string MuxSession::failure_text(const std::optional<v1::PolicyTagged>& m) {
  const std::string target = "policy daemon " + log::escape_text(mux_.target());
  if (m && m->has_ended()) return target + " ended the session: " + log::escape_text(m->ended().reason());
  if (inbox_ && inbox_->is_broken()) broke_ = inbox_->failure();
  if (!broke_.empty()) {
    return target + " " + (broke_.rfind("unreachable", 0) == 0 ? "" : "failed: ") + log::escape_text(broke_);
  }
  return target + " gave no answer within --policy-timeout " + std::to_string(mux_.timeout().count()) + "ms";
}

}  // namespace mailhook::front
