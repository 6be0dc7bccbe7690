// What --milter serves with: the socket, its timeouts and bounds, and the
// per-connection limits (StateLimits). Plain data. Its member initialisers
// (and StateLimits') are the one place the milter's defaults are
// declared: policyd/config.h's --milter-* flags take them from here.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

#include "mailcore/telemetry/metrics.h"
#include "policyd/milter/milter_state.h"

namespace mailhook::policyd::milter {

struct MilterConfig {
  std::string socket;                   // "inet:PORT@HOST", "inet6:PORT@HOST" or "unix:PATH"
  int timeout_s = 7210;                 // how long a silent MTA connection is kept
  std::size_t max_packet = 1u << 20;    // the largest milter packet accepted from the MTA
  std::size_t max_connections = 1000;   // MTA connections open at once; past it one is closed at accept
  unsigned socket_mode = 0660;          // of a unix socket
  StateLimits limits;                   // macros and message per connection
  telemetry::Registry* registry = nullptr;  // --metrics; nullptr: kept private
};

// A socket mode as --milter-socket-mode spells it ("0660").
inline std::string octal_mode(unsigned mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", mode & 07777u);
  return text;
}

}  // namespace mailhook::policyd::milter
