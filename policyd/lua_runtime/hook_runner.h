// Calls one smtpe hook of every script in --script order on the session's
// Lua thread, under the hook deadline, and turns what comes back into an
// outcome. The one place with a switch on lua_resume's status.
#pragma once

#include <functional>
#include <optional>

#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {

struct HookOutcome {
  enum class Kind : std::uint8_t {
    Default,      // no hook, no reply, an error or a malformed reply
    Replied,      // a well-formed reply
    Overrun,      // past --hook-timeout or --lua-memory: 451 4.3.0
  };
  Kind kind = Kind::Default;
  Reply reply;
};

// Pushes the hook's arguments onto `thread`; returns how many.
using PushArgs = std::function<int(lua_State* thread)>;

// True when any script defines hook.<phase>.
bool has_hook(Generation& g, HookPhase phase);

// Runs hook.<phase> of each script until one replies.
HookOutcome run_hook(SessionContext& s, HookPhase phase, const PushArgs& args = {});

// Releases the session's Lua thread (end of session, or a failed thread).
void release_thread(SessionContext& s);

// The reply for a hook stopped by the timeout or the memory cap.
Reply overrun_reply();

}  // namespace mailhook::policyd
