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
  if (fell_back_.exchange(true)) return;
  log::warning("policy daemon {} {}: one gRPC call per SMTP session, shared streams tried again every "
               "--policy-stream-age {}s (upgrade policyd to get them back, or set --policy-streams 0 to say so)",
               log::escape_text(target_), log::escape_text(why), options_.stream_age.count());
}

void SessionMux::streams_serve() {
  if (!fell_back_.load(std::memory_order_relaxed) || !fell_back_.exchange(false)) return;
  log::info("policy daemon {} serves shared streams again: new SMTP sessions share {} streams",
            log::escape_text(target_), options_.streams);
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
  // next replica.
  if (streams_.size() < options_.streams) {
    auto s = std::make_shared<Stream>(stub_);
    s->start();
    streams_.push_back(s);
    return s;
  }
  return streams_[next_++ % streams_.size()];
}

std::unique_ptr<PolicySession> SessionMux::session(asio::any_io_executor executor) {
  return std::make_unique<MuxSession>(*this, std::move(executor));
}

}  // namespace mailhook::front
