// mailhook-policyd --check: every setting looked at the way start-up will
// use it, then the scripts loaded once; one line per problem. Reads and
// resolves; never binds, listens or writes.
#pragma once

#include "policyd/config.h"
#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd {

// Prints the problems (or OK) on stderr; returns the exit code, 0 or 1.
int check_config(const PolicyConfig& config, const RuntimeConfig& runtime);

}  // namespace mailhook::policyd
