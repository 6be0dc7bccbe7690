// The bounds of one shared Sessions stream (proto StreamLimits) as policyd
// defaults them. policyd's --max-pending-events and --max-sessions-per-stream
// take them; the front assumes them for a stream until policyd's first frame
// gives the real ones. Declared once here, below both daemons; constants
// only, never read from a flag or the wire (policyd's StreamLimits is).
#pragma once

#include <cstddef>

namespace mailhook::wire {

struct StreamLimitDefaults {
  static constexpr std::size_t max_pending_events = 64;         // per session: events unanswered
  static constexpr std::size_t max_sessions_per_stream = 10000;  // open at once on one stream
};

}  // namespace mailhook::wire
