// policyd's refusal lines (docs/logging.md): "reject:" when a script's
// reply refuses or defers an event, "would_reject:" when a shadow script's
// would have. The fields come from the session, the key names from
// mailcore/telemetry/decision_log.h, shared with the front. Never touches
// a lua_State; runs on the session's worker.
#pragma once

#include <string_view>

#include "mailcore/event/event.h"
#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {

// One line at notice level; `hook` as "rcpt", `script` as --script named it.
void log_refusal(const SessionContext& s, std::string_view verb, std::string_view hook, std::string_view script,
                 const Reply& reply);

// The MTA's queue id (milter macro i) of the session, "" when unknown.
std::string_view mta_queue_id(const ClientFacts& client);

}  // namespace mailhook::policyd
