// FallbackNotices: the phases of the fallback as an operator reads them.
// A flip is a fallback after shared streams served: sessions racing to one
// broken stream all report it, and count once.
#include "frontend/policy_client/fallback_notices.h"

#include <utility>

namespace mailhook::front {

FallbackNotices::Note FallbackNotices::fell_back(Clock::time_point now) {
  std::lock_guard l(mu_);
  const bool was_serving = serving_since_ != Clock::time_point{};
  serving_since_ = Clock::time_point{};
  switch (phase_.load(std::memory_order_relaxed)) {
    case Phase::Serving:
      phase_.store(Phase::FellBack, std::memory_order_relaxed);
      return {Say::OlderPolicyd, 0};
    case Phase::FellBack:  // a re-probe met the older policyd again
      return {};
    case Phase::Recovered:  // served again, and now not: the replicas differ
      phase_.store(Phase::Differ, std::memory_order_relaxed);
      said_at_ = now;
      flips_ = 0;
      total_flips_ = 1;
      return {Say::ReplicasDiffer, 1};
    case Phase::Differ:
      if (!was_serving) return {};
      ++flips_;
      ++total_flips_;
      if (now - said_at_ < summary_every_) return {Say::Flip, total_flips_};
      said_at_ = now;
      return {Say::StillDiffer, std::exchange(flips_, 0)};
  }
  return {};
}

FallbackNotices::Note FallbackNotices::served(Clock::time_point now) {
  if (phase_.load(std::memory_order_relaxed) == Phase::Serving) return {};
  std::lock_guard l(mu_);
  switch (phase_.load(std::memory_order_relaxed)) {
    case Phase::Serving:
      return {};
    case Phase::FellBack:
      phase_.store(Phase::Recovered, std::memory_order_relaxed);
      serving_since_ = now;
      return {Say::ServeAgain, 0};
    case Phase::Recovered:
    case Phase::Differ:
      if (serving_since_ == Clock::time_point{}) {
        serving_since_ = now;
        return {};
      }
      if (now - serving_since_ < heal_after_) return {};
      // kHealAges generations of streams, each placed anew by round
      // robin, met no replica without Sessions.
      {
        const Phase was = phase_.load(std::memory_order_relaxed);
        phase_.store(Phase::Serving, std::memory_order_relaxed);
        serving_since_ = Clock::time_point{};
        if (was == Phase::Recovered) return {};  // ServeAgain said it
        return {Say::AllServe, std::exchange(total_flips_, 0)};
      }
  }
  return {};
}

}  // namespace mailhook::front
