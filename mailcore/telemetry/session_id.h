// Session ids of both daemons (client.id_log; the queue id is the session
// id + "T" + n): unique across processes, hosts and restarts, since several
// fronts may share one spool (compose --scale), several policyd replicas
// serve one MTA fleet, and a restart may fall in the same second. Short
// and sortable: Crockford base32 of the time in milliseconds, a random
// per-process node and a per-process counter.
// Never reads a clock inside format(); never blocks.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace mailhook::telemetry {

class SessionIdSource {
 public:
  // Draws the node: 40 random bits from getrandom(2).
  SessionIdSource();
  explicit SessionIdSource(std::uint64_t node) : node_(node & kNodeMask) {}

  // The next id, from the wall clock and the counter; thread-safe.
  std::string next();

  // 21 characters: 9 of milliseconds since 1970 (good until 3084), 8 of
  // node (40 bits), 4 of counter (its low 20 bits). Fixed width and an
  // alphabet in ASCII order, so ids of one process sort by time.
  static std::string format(std::uint64_t unix_ms, std::uint64_t node, std::uint64_t counter);

  static constexpr std::uint64_t kNodeMask = (std::uint64_t{1} << 40) - 1;

 private:
  std::uint64_t node_;
  std::atomic<std::uint64_t> counter_{0};
};

}  // namespace mailhook::telemetry
