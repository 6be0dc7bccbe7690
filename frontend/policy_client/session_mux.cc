// SessionMux's own parts: the rotation of shared streams (pick), the
// fallback to one call per session and back, and the session factory. The
// stream reactor lives in mux_stream.*, a session's conversation on it in
// mux_session.*. Never blocks a connection's thread.
#include "frontend/policy_client/session_mux.h"

#include "frontend/policy_client/mux_session.h"
#include "frontend/policy_client/mux_stream.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::front {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

SessionMux::SessionMux(v1::Policy::Stub& stub, std::string target, std::chrono::milliseconds timeout,
                       SessionMuxOptions options, PolicyLink& per_call)
    : stub_(stub), target_(std::move(target)), timeout_(timeout), options_(options), per_call_(per_call) {}

void SessionMux::fall_back(const std::string& why) {
  // Every session that meets UNIMPLEMENTED pushes the re-probe out; the
  // sessions racing to one probe all land within the same interval.
  per_call_until_.store((Clock::now() + options_.stream_age).time_since_epoch().count(), std::memory_order_relaxed);
  {
    std::lock_guard l(mu_);
    for (auto& s : streams_) s->retire();
    streams_.clear();
  }
  const FallbackNotices::Note note = notices_.fell_back(Clock::now());
  const std::string target = log::escape_text(target_);
  switch (note.say) {
    case FallbackNotices::Say::OlderPolicyd:
      log::warning("policy daemon {} {}: one gRPC call per SMTP session, shared streams tried again every "
                   "--policy-stream-age {}s (upgrade policyd to get them back, or set --policy-streams 0 to say so)",
                   target, log::escape_text(why), options_.stream_age.count());
      break;
    case FallbackNotices::Say::ReplicasDiffer:
      // `why` is the older replicas' UNIMPLEMENTED, said with OlderPolicyd.
      log::warning("policy daemon {}: replicas differ: some serve shared streams, some do not (Sessions "
                   "UNIMPLEMENTED: mixed versions, as in a rolling upgrade): new SMTP sessions switch between "
                   "shared streams and one gRPC call each every --policy-stream-age {}s; said again at most every "
                   "{} min with the count, and once when every replica serves shared streams",
                   target, options_.stream_age.count(),
                   std::chrono::duration_cast<std::chrono::minutes>(FallbackNotices::kSummaryEvery).count());
      break;
    case FallbackNotices::Say::StillDiffer:
      log::warning("policy daemon {}: replicas still differ: {} more switches to one gRPC call per SMTP session "
                   "in {} min (finish the upgrade)",
                   target, note.flips,
                   std::chrono::duration_cast<std::chrono::minutes>(FallbackNotices::kSummaryEvery).count());
      break;
    case FallbackNotices::Say::Flip:
      log::debug("policy daemon {}: replicas differ, switch {} to one gRPC call per SMTP session for {}s", target,
                 note.flips, options_.stream_age.count());
      break;
    default:  // a re-probe met the older policyd again, or a session racing to the same broken stream
      break;
  }
}

void SessionMux::streams_serve() {
  const FallbackNotices::Note note = notices_.served(Clock::now());
  if (note.say == FallbackNotices::Say::ServeAgain) {
    log::info("policy daemon {} serves shared streams again: new SMTP sessions share {} streams",
              log::escape_text(target_), options_.streams);
  } else if (note.say == FallbackNotices::Say::AllServe) {
    log::info("policy daemon {}: every replica it reaches serves shared streams ({}s without a fallback, after {} "
              "switches since the replicas differed): new SMTP sessions share {} streams",
              log::escape_text(target_), options_.stream_age.count() * FallbackNotices::kHealAges, note.flips,
              options_.streams);
  }
}

SessionMux::~SessionMux() {
  std::lock_guard l(mu_);
  for (auto& s : streams_) s->cancel();
}

std::shared_ptr<SessionMux::Stream> SessionMux::pick() {
  std::lock_guard l(mu_);
  const Clock::time_point now = Clock::now();
  // Streams that take no new session leave the rotation; their sessions
  // keep them alive until they end.
  std::erase_if(streams_, [&](const std::shared_ptr<Stream>& s) {
    if (s->usable(now, options_.stream_age)) return false;
    s->retire();
    return true;
  });
  // Fewer than asked: a new stream, which gRPC's round robin places on the
  // next replica; the session that opened it goes on it (so a replica
  // without shared streams is met by that session, which falls back).
  if (streams_.size() < options_.streams) {
    auto s = std::make_shared<Stream>(stub_);
    s->start();
    streams_.push_back(s);
    return s;
  }
  // Other sessions go round robin over the replicas the streams reached,
  // on one stream each (the oldest there): the more sessions share a
  // stream, the more of their messages go in one write (bench/switches.py,
  // one replica: 0.51 against 0.65 ms of CPU per message when they spread
  // over four). The others on a replica stand by and take over when it
  // retires or breaks. A stream is placed once policyd's first frame came
  // (it reached a replica that serves); until one has, the oldest serves.
  std::array<const std::string*, kMaxPolicyStreams> peers{};
  std::array<std::size_t, kMaxPolicyStreams> leads{};
  std::size_t replicas = 0;
  for (std::size_t i = 0; i < streams_.size() && i < kMaxPolicyStreams; ++i) {
    peers[i] = streams_[i]->peer();
    if (!peers[i]) continue;
    bool seen = false;
    for (std::size_t j = 0; j < i && !seen; ++j) seen = peers[j] && *peers[j] == *peers[i];
    if (!seen) leads[replicas++] = i;
  }
  if (replicas == 0) return streams_.front();
  return streams_[leads[next_++ % replicas]];
}

std::unique_ptr<PolicySession> SessionMux::session(asio::any_io_executor executor) {
  return std::make_unique<MuxSession>(*this, std::move(executor));
}

}  // namespace mailhook::front
