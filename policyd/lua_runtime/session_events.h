// What a session does with each event: which smtpe hook it calls with
// which arguments, the message file and line splitting for the content
// hooks, and the Decision that results. Runs on the session's worker.
#pragma once

#include <asio.hpp>

#include <optional>

#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {

// hook.accept(ip, ptr): the decision on the connection (seq 0).
asio::awaitable<Decision> accept_session(SessionContext& s);

// One event; a Decision when the event wants a reply.
asio::awaitable<std::optional<Decision>> handle_event(SessionContext& s, const SessionEvent& event);

// The transport is gone: hook.close if it did not run, drop the temp file.
asio::awaitable<void> end_session(SessionContext& s, bool close_hook_ran);

// The worker is stopping: free what the session holds, run no hook.
void discard_session(SessionContext& s);

}  // namespace mailhook::policyd
