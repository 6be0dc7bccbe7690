// FallbackNotices: what SessionMux says about falling back to one gRPC
// call per session (a replica answered Sessions with UNIMPLEMENTED) and
// about shared streams serving again, so an operator reads what happens,
// not every flip. One older policyd: one warning, and one info line once
// an upgrade serves shared streams. Replicas of mixed versions behind one
// --policyd (a rolling upgrade: round robin puts new streams on old and new
// replicas) flip every --policy-stream-age: after the first flip that
// follows a recovery, one warning that the replicas differ, then at most
// one line per `summary_every` with the flips since, until kHealAges
// stream ages serve with no fallback (one info line). Decides only: never
// logs, never blocks past a few comparisons; any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace mailhook::front {

class FallbackNotices {
 public:
  using Clock = std::chrono::steady_clock;

  enum class Say : std::uint8_t {
    Nothing,
    OlderPolicyd,    // warning: no shared streams, one call per session
    ServeAgain,      // info: shared streams serve again (after OlderPolicyd)
    ReplicasDiffer,  // warning: some replicas serve shared streams, some do not
    StillDiffer,     // warning: `flips` more flips since the last line
    Flip,            // debug: one more flip while replicas differ (`flips` since they did)
    AllServe,        // info: kHealAges stream ages without a fallback
  };
  struct Note {
    Say say = Say::Nothing;
    std::uint64_t flips = 0;  // StillDiffer: since the last line; Flip, AllServe: since ReplicasDiffer
  };

  // How often StillDiffer may be said while replicas differ.
  static constexpr std::chrono::minutes kSummaryEvery{10};
  // Stream ages served with no fallback before the replicas count as alike
  // again. One is not enough: each age replaces the streams, but round
  // robin, shared with the per-call sessions and other fronts' streams,
  // can put a whole generation (or two) on new replicas only.
  static constexpr int kHealAges = 5;

  FallbackNotices(Clock::duration stream_age, Clock::duration summary_every = kSummaryEvery)
      : heal_after_(stream_age * kHealAges), summary_every_(summary_every) {}

  // A session met UNIMPLEMENTED and new sessions go one call each.
  Note fell_back(Clock::time_point now);
  // A session opened on a shared stream. Lock-free while nothing fell back.
  Note served(Clock::time_point now);

 private:
  enum class Phase : std::uint8_t {
    Serving,    // no fallback to speak of
    FellBack,   // OlderPolicyd said; no shared stream has served since
    Recovered,  // ServeAgain said; not yet heal_after_ without a fallback
    Differ,     // ReplicasDiffer said; not yet heal_after_ without a fallback
  };

  const Clock::duration heal_after_;
  const Clock::duration summary_every_;
  std::atomic<Phase> phase_{Phase::Serving};  // written under mu_
  std::mutex mu_;
  // Since when shared streams serve with no fallback (Recovered, Differ);
  // unset (time_point{}) while the last word was a fallback.
  Clock::time_point serving_since_{};
  Clock::time_point said_at_{};    // Differ: the last line
  std::uint64_t flips_ = 0;        // Differ: since the last line
  std::uint64_t total_flips_ = 0;  // Differ: since ReplicasDiffer
};

}  // namespace mailhook::front
