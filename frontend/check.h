// mailhook-front --check: every setting looked at the way start-up will
// use it, one line per problem. Reads and resolves; never binds or writes.
#pragma once

#include "frontend/config.h"

namespace mailhook::front {

// Prints the problems (or OK) on stderr; returns the exit code, 0 or 1.
int check_config(const FrontConfig& config);

}  // namespace mailhook::front
