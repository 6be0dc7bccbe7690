// --milter: libmilter serving the milter protocol to Postfix or Sendmail,
// every callback handed to the same Runtime (Lua workers) as the gRPC
// sessions. libmilter keeps its state in process globals and runs one
// thread per MTA connection plus smfi_main; this is the only file that
// touches them.
#pragma once

#include <string>

#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd::milter {

struct MilterConfig {
  std::string socket;   // "inet:PORT@HOST", "inet6:PORT@HOST" or "unix:PATH"
  int timeout_s = 7210; // libmilter's I/O timeout towards the MTA
};

// Opens the socket and starts smfi_main on a thread of its own; "" or why
// not. One adapter per process (libmilter's globals).
std::string start_milter(Runtime& runtime, const MilterConfig& config);

// Stops accepting MTA connections; open ones go on (drain).
void stop_accepting();

// After the drain: callbacks still waiting get 4xx (tempfail), so no
// message is accepted and then lost. Joins smfi_main's thread.
void stop_milter();

}  // namespace mailhook::policyd::milter
