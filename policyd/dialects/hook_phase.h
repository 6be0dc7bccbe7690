// The smtpe hooks (seed 000), mailhook's native event -> hook names, that
// every dialect is built on: the phase a running hook is in, its name, and
// how a hook's arguments are pushed. Named by the dialects and by the
// runtime that runs them; it must name nothing of either.
#pragma once

#include <lua.hpp>

#include <cstdint>
#include <functional>
#include <string_view>

namespace mailhook::policyd {

// What the hook that is running may see (ARCHITECTURE pattern 7).
enum class HookPhase : std::uint8_t {
  Load,      // top-level code of a script while loading
  Accept, Helo, Ehlo, Auth, Mail, Rcpt, Data, Content, Header, Eoh, Body, Dot, Forward,
  Reset, Rset, Noop, Help, Quit, Unknown, Xclient, Error, Close,
  Vrfy, Expn,  // mailhook: VRFY and EXPN (VPOP3 DoVRFY/DoEXPN, qpsmtpd hook_vrfy)
};
// The last phase: arrays indexed by phase have kLastHookPhase + 1 entries.
constexpr HookPhase kLastHookPhase = HookPhase::Expn;
std::string_view hook_name(HookPhase phase);

// Pushes the hook's arguments onto `thread`; returns how many.
using PushArgs = std::function<int(lua_State* thread)>;

}  // namespace mailhook::policyd
