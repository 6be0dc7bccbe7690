// The one list of mailhook's Lua modules (modules.h), in the order every
// generation opens them; the runtime receives it and names none itself.
// A new module is one open_<module> in its own file and one line here.
#include "policyd/lua_api/modules.h"

#include <array>

namespace mailhook::policyd {
namespace {

// The order of policyd until the list moved here: the watched string
// patterns first (they replace the string library's), then the globals.
constexpr std::array kModules{
    LuaModule{"string", open_patterns},
    LuaModule{"client", open_client},
    LuaModule{"smtpe", open_smtpe},
    LuaModule{"net", open_net},
    LuaModule{"syslog", open_syslog},
    LuaModule{"message", open_message},
    LuaModule{"dns", open_dns},
    LuaModule{"mailhook", open_control},
    LuaModule{"mime", open_mime},
    LuaModule{"kv", open_kv},
    LuaModule{"dmarc", open_dmarc},
    LuaModule{"session", open_notes},  // and transaction
    LuaModule{"map", open_map},
    LuaModule{"spf", open_spf},
    LuaModule{"dkim", open_dkim},
};

}  // namespace

LuaModules lua_modules() { return kModules; }

}  // namespace mailhook::policyd
