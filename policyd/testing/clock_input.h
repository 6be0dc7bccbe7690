// --test-clock-stdin: the scripts' clock (ScriptClock) driven by lines on
// policyd's standard input, so tools/case-replay can replay a case file's
// `clock:` and `advance:` steps through the real daemons. Only the process
// that started policyd holds that pipe; it must never read a file, a
// socket or the config, and never touch policyd's own timers.
#pragma once

#include <memory>
#include <string>

#include "policyd/lua_runtime/script_clock.h"

namespace mailhook::policyd::testing {

// One line: "set SECONDS" (since the epoch) or "advance SECONDS" (> 0, at
// most ten years, as case files allow). false and `error` otherwise.
bool apply_clock_line(const std::string& line, ScriptClock& clock, std::string& error);

// Reads lines from fd 0 on a thread of its own until EOF and applies each,
// logging the time the scripts now see ("test clock: ..."); a bad line is
// logged and ignored. The thread is detached: it ends at EOF or with the
// process.
void follow_clock_input(std::shared_ptr<ScriptClock> clock);

}  // namespace mailhook::policyd::testing
