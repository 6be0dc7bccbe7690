// Client bytes made safe for a log line: whatever an SMTP client, a
// gRPC peer or an MTA sent (a HELO name, an AUTH user, an address, a
// script's syslog text built from them) is escaped before it reaches
// policyd's log. Must never let CR, LF, NUL or another control byte
// through: one call, one log line (THREATS.md, SMTP port).
#pragma once

#include <string>
#include <string_view>

namespace mailhook::policyd {

// CR, LF and TAB as \r \n \t, every other control byte and DEL as \xHH,
// a backslash as \\ (so an escape in the log always means one); other
// bytes, UTF-8 included, are kept.
std::string log_text(std::string_view client_bytes);

}  // namespace mailhook::policyd
