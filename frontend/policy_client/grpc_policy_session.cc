// GrpcPolicySession: PolicySession over one PolicyStream per SMTP session.
// Converts mailcore events to mailhook.v1 and back (mailcore/wire), waits
// on the stream until the deadline, and words a failure for the log. Never
// blocks the connection's thread; never decides a reply (the failure mode
// is PolicyClient's).
#include "frontend/policy_client/grpc_policy_session.h"

#include "frontend/policy_client/policy_stream.h"
#include "mailcore/telemetry/log.h"
#include "mailcore/wire/convert.h"

namespace mailhook::front {
namespace {

// Streams tried per session before policyd counts as down at connect.
constexpr int kOpenAttempts = 3;

class GrpcPolicySession final : public PolicySession {
 public:
  GrpcPolicySession(v1::Policy::Stub& stub, const std::string& target, std::chrono::milliseconds timeout,
                    asio::any_io_executor executor)
      : stub_(stub), target_(target), timeout_(timeout), executor_(std::move(executor)) {}
  ~GrpcPolicySession() override { abort(); }

  asio::awaitable<PolicyOpening> open(SessionStart start, PolicyClock::time_point deadline) override;
  asio::awaitable<PolicyAnswer> ask(SessionEvent event, PolicyClock::time_point deadline) override;
  void notify(SessionEvent event) override;
  void close() override {
    if (stream_) stream_->close();
  }
  void abort() override {
    if (stream_) stream_->cancel();
  }

 private:
  asio::awaitable<std::string> failure_reason();

  v1::Policy::Stub& stub_;
  const std::string& target_;
  std::chrono::milliseconds timeout_;
  asio::any_io_executor executor_;
  std::shared_ptr<PolicyStream> stream_;
  PolicyFault fault_ = PolicyFault::None;  // once set, the session is finished
  std::string failure_;
};

asio::awaitable<PolicyOpening> GrpcPolicySession::open(SessionStart start, PolicyClock::time_point deadline) {
  v1::FrontMessage first;
  wire::to_proto(start, first.mutable_start());
  std::optional<v1::PolicyMessage> m;
  // A stream that breaks before policyd opened the session (a replica that
  // just died, not yet marked down by the balancer) is tried again on the
  // next replica: nothing was said to the client yet. A slow policyd is not
  // retried: the deadline covers every attempt.
  for (int attempt = 0; attempt < kOpenAttempts && !m; ++attempt) {
    if (stream_) stream_->cancel();
    stream_ = std::make_shared<PolicyStream>(stub_, executor_);
    stream_->start(first);
    auto got = co_await stream_->next(deadline);
    m = std::move(got);
    if (!m && !stream_->broken()) break;  // the deadline passed
    if (m && !m->has_opened()) break;
  }
  PolicyOpening opening;
  if (m && m->has_opened()) {
    opening.capabilities = wire::from_proto(m->opened().capabilities());
    opening.decision = wire::from_proto(m->opened().decision());
    co_return opening;
  }
  stream_->close();
  fault_ = opening.fault = PolicyFault::Unavailable;
  failure_ = co_await failure_reason();
  opening.failure = failure_;
  co_return opening;
}

void GrpcPolicySession::notify(SessionEvent event) {
  if (fault_ != PolicyFault::None || !stream_) return;
  v1::FrontMessage m;
  wire::to_proto(std::move(event), m.mutable_event());
  stream_->send(std::move(m));
}

asio::awaitable<PolicyAnswer> GrpcPolicySession::ask(SessionEvent event, PolicyClock::time_point deadline) {
  PolicyAnswer answer;
  if (fault_ != PolicyFault::None || !stream_) {
    answer.fault = fault_ == PolicyFault::None ? PolicyFault::Unavailable : fault_;
    answer.failure = failure_;
    co_return answer;
  }
  const std::uint64_t seq = event.seq;
  notify(std::move(event));
  auto m = co_await stream_->next(deadline);
  if (m && m->has_decision() && m->decision().seq() == seq) {
    answer.decision = wire::from_proto(m->decision());
    co_return answer;
  }
  stream_->close();
  // No co_await inside ?: (GCC 12 destroys its temporaries twice there).
  if (m) {
    fault_ = PolicyFault::OutOfOrder;
    failure_ = "policy daemon " + log::escape_text(target_) + " answered out of order";
  } else {
    fault_ = PolicyFault::Unavailable;
    failure_ = co_await failure_reason();
  }
  answer.fault = fault_;
  answer.failure = failure_;
  co_return answer;
}

// "policy daemon HOST:PORT unreachable: connection refused", or no answer
// within --policy-timeout: what an administrator checks first.
asio::awaitable<std::string> GrpcPolicySession::failure_reason() {
  const std::string target = "policy daemon " + log::escape_text(target_);
  // A refused connection fails the read a moment before gRPC's status
  // arrives: wait for it briefly, so the line says why.
  std::string why;  // no co_await inside ?: (GCC 12 destroys its temporaries twice there)
  if (stream_) why = co_await stream_->settled_failure(PolicyClock::now() + std::chrono::seconds(1));
  if (!why.empty()) {
    co_return target + " " + (why.rfind("unreachable", 0) == 0 ? "" : "failed: ") + log::escape_text(why);
  }
  co_return target + " gave no answer within --policy-timeout " + std::to_string(timeout_.count()) + "ms";
}

}  // namespace

std::unique_ptr<PolicySession> GrpcPolicyLink::session(asio::any_io_executor executor) {
  return std::make_unique<GrpcPolicySession>(stub_, target_, timeout_, std::move(executor));
}

}  // namespace mailhook::front
