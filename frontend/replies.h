// The front's fixed reply texts, in one place: failure modes, limits and
// DATA faults (SPEC "Bad input" and "Failure, in numbers"). Constant texts:
// never a client byte, so a reply built from them needs no escaping.
#pragma once

#include "mailcore/event/event.h"

namespace mailhook::front::replies {

inline const Reply kPolicyDownAtConnect{421, "4.3.0", {"Policy service unavailable, try again later"}};
inline const Reply kPolicyDownInSession{451, "4.3.0", {"Policy service unavailable, try again later"}};
inline const Reply kTooManyConnections{421, "4.7.0", {"Too many connections, try again later"}};
inline const Reply kTimeout{421, "4.4.2", {"Timeout exceeded, closing connection"}};
inline const Reply kLineTooLong{500, "5.5.2", {"Line too long"}};  // RFC 5321 4.5.3.1.4
inline const Reply kBareLineEnd{550, "5.5.2", {"Message refused: bare CR or LF in DATA"}};  // CVE-2023-51764
inline const Reply kNulInMessage{554, "5.6.0", {"Message refused: NUL octet in DATA"}};
inline const Reply kTooBig{552, "5.3.4", {"Message size exceeds fixed limit"}};
// A line over the session's message line limit (set by the policy: mailhook.limits).
inline const Reply kLineTooLongInData{550, "5.6.0", {"Message has a line over the length limit"}};
inline const Reply kSpoolFailed{452, "4.3.1", {"Insufficient system storage, try again later"}};
inline const Reply kShuttingDown{421, "4.3.2", {"Service shutting down"}};

}  // namespace mailhook::front::replies
