// What the runtime knows of a Lua module (policyd/lua_api): a name and the
// function that installs it into a generation's master state. The daemon
// hands the list over in RuntimeConfig::modules, so lua_runtime names no
// module and includes nothing from lua_api. Plain data: transports that
// see runtime.h get no Lua header from it.
#pragma once

#include <span>
#include <string_view>

struct lua_State;

namespace mailhook::policyd {

struct LuaModule {
  std::string_view name;       // the (first) global it installs or changes
  void (*open)(lua_State* L);  // installs them; runs once per generation, before any script
};

// In the order they are opened (a later module may wrap an earlier one's globals).
using LuaModules = std::span<const LuaModule>;

}  // namespace mailhook::policyd
