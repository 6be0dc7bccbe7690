// client.host when neither the front nor the MTA gave it: the PTR name of
// client.address, kept only if it resolves back to that address (forward
// confirmation, as Postfix's reverse_client_hostname vs client_hostname).
// Fails to "" (timeout, NXDOMAIN, no match), never hangs: every query is
// bounded by --dns-timeout. Runs on the session's worker.
#pragma once

#include <string>
#include <string_view>

#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {

// Starts the lookup unless it runs already; when it ends it sets
// s.start.client.host and s.host_resolved and calls s.wake().
void start_host_lookup(SessionContext& s);

// Lua side (client.host): the name now, or suspends the hook until the
// lookup ends. Returns lua_yieldk's result or 1 (the name pushed).
int push_client_host(lua_State* L, SessionContext& s);

// "a.b.c.d" / IPv6 text -> the same address in canonical text; IPv4-mapped
// IPv6 becomes IPv4. "" when not an address.
std::string canonical_address(std::string_view text);

}  // namespace mailhook::policyd
