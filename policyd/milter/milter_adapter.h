// --milter: the milter protocol (version 6, as Postfix and Sendmail speak
// it), every MTA command handed to the same Runtime (Lua workers) as the
// gRPC sessions. One thread accepts; each connection then runs as a
// coroutine on the worker thread of its session, so a command, its hook
// and its reply never cross threads (libmilter's pool polls every idle
// connection and wakes two threads per command).
#pragma once

#include <cstddef>
#include <string>

#include "policyd/config.h"
#include "policyd/lua_runtime/runtime.h"
#include "policyd/milter/milter_config.h"

namespace mailhook::policyd::milter {

// The milter's part of policyd's flags (config.h).
MilterConfig config_of(const PolicyConfig& c);

// Opens the socket and starts serving on a thread of its own; "" or why
// not. One milter server per process.
std::string start_milter(Runtime& runtime, const MilterConfig& config);

// --check: "" when `spec` ("inet:PORT@HOST", "inet6:PORT@HOST", "unix:PATH")
// names a socket start_milter could open (a name resolves; a unix
// socket's directory exists and is writable), else why not. Binds nothing.
std::string check_socket(const std::string& spec);

// Stops accepting MTA connections; open ones go on (drain).
void stop_accepting();

// After the drain: commands still waiting for a decision get 4xx
// (tempfail), so no message is accepted and then lost; idle connections
// are closed. Joins the thread.
void stop_milter();

}  // namespace mailhook::policyd::milter
