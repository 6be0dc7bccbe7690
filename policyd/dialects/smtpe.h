// The smtpe dialect (seed 000), mailhook's native one: which hook.* an
// event calls and with which arguments. The other dialects are Lua
// adapters over these hooks (dialects.cc). This one is C++ because every
// event of every session passes through it; it must never allocate beyond
// the argument closure, nor read anything but the event it is given.
#pragma once

#include <optional>
#include <string_view>

#include "mailcore/event/event.h"
#include "policyd/dialects/hook_phase.h"

namespace mailhook::policyd::dialects {

// The value of the event's parameter `name` ("" when absent): MAIL/RCPT
// ESMTP keywords as parsed by mailcore/smtp/command.cc (upper case), the
// AUTH exchange's "user"/"password".
std::string_view event_parameter(const SessionEvent& e, std::string_view name);

// hook.accept(ip, ptr): its two arguments.
int push_accept_args(lua_State* T, const ClientFacts& c);

// The smtpe hook an event calls, its arguments in `args`; nullopt when the
// event has no hook of its own (message chunks and end of message are the
// session's content path, STARTTLS has none in smtpe). `args` refers to
// `e`, which must outlive the hook call.
std::optional<HookPhase> smtpe_hook(const SessionEvent& e, PushArgs& args);

}  // namespace mailhook::policyd::dialects
