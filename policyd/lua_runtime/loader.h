// Builds a Generation: a fresh master state with the capped allocator,
// the sandboxed standard libraries, mailhook's Lua modules and every
// script loaded into its own environment. Runs on any thread; the result
// is then handed to exactly one worker.
#pragma once

#include <memory>
#include <string>

#include "policyd/lua_runtime/context.h"
#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd {

// nullptr and `error` (naming file and line) when a script fails to load.
std::shared_ptr<Generation> load_generation(const RuntimeConfig& config, std::string& error);

// sandbox.cc: removes what would take policyd down (allow-list).
void apply_sandbox(lua_State* L);

}  // namespace mailhook::policyd
