// Look-ahead under pipelining (RFC 2920): the events of the MAIL, RCPT and
// DATA commands already read after the one being asked, built on a copy of
// the SessionMachine that predicts every earlier command is accepted. The
// front sends them ahead, marked speculative, in one frame. Pure: never
// changes the real machine, never reads past a command it cannot predict.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "mailcore/event/event.h"
#include "mailcore/session/session_machine.h"

namespace mailhook::session {

// The events to send ahead of `step` (the command being asked, not yet
// committed on `machine`): at most `depth`, each marked speculative, for
// the complete lines at the start of `pipelined` (the client's bytes after
// that command). Empty unless `step` is a MAIL or RCPT the policy may
// decide whose default accepts. Stops at the first line that is not MAIL,
// RCPT or DATA, is over-long or incomplete, or whose default is not an
// accept (a syntax or sequence error, a limit such as --max-recipients);
// DATA is the last. `next_transaction_id`: what the front passes to
// on_command for those lines.
std::vector<SessionEvent> events_ahead(const SessionMachine& machine, const Step& step, std::string_view pipelined,
                                       std::size_t depth, const std::string& next_transaction_id);

}  // namespace mailhook::session
