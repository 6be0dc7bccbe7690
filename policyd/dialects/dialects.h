// Dialects: scripts written for other systems' Lua APIs run on mailhook's
// one native event model (the smtpe hooks, smtpe.h). Every dialect is
// declared once, in dialects.cc's table; each but smtpe is a thin Lua
// adapter (policyd/dialects/<name>.lua, embedded) that gives a script's
// environment what that API expects before the script runs, recognises
// the script afterwards, and defines the hook.* functions that call the
// script's own call-backs. Runs at load time only; never at SMTP time.
#pragma once

#include <lua.hpp>

#include <string>
#include <vector>

namespace mailhook::policyd {

// --dialect's values: "auto" and every dialect's name.
std::vector<std::string> dialect_choices();

// Loads the adapters into the master state (once per Generation).
bool load_dialects(lua_State* L, std::string& error);

// Before a script runs: its environment (at `env`) gets every dialect's
// globals (smtp.* for smtpf).
bool prepare_env(lua_State* L, int env, std::string& error);

// After it ran: recognises the dialect ("smtpe", "smtpf") and adapts the
// script to hook.*; `wanted` is --dialect ("auto" or a name), `source`
// the script's text (an adapter never reads files on its own). "" and
// `error` (naming the script) when the script does not fit.
std::string adapt_script(lua_State* L, int env, const std::string& wanted, const std::string& script,
                         const std::string& source, std::string& error);

}  // namespace mailhook::policyd
