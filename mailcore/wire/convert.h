// SessionEvent/Decision <-> mailhook.v1 messages: the only mailcore code
// that sees protobuf. Conversions move strings (message chunks are never
// copied twice); they never validate: the receiver does (reply_text.h).
#pragma once

#include "mailcore/event/event.h"
#include "mailhook/v1/session.pb.h"

namespace mailhook::wire {

namespace v1 = ::mailhook::v1;

void to_proto(const SessionStart& in, v1::SessionStart* out);
SessionStart from_proto(const v1::SessionStart& in);

void to_proto(SessionEvent&& in, v1::Event* out);
SessionEvent from_proto(v1::Event&& in);

void to_proto(const Decision& in, v1::Decision* out);
Decision from_proto(const v1::Decision& in);

void to_proto(const Capabilities& in, v1::Capabilities* out);
Capabilities from_proto(const v1::Capabilities& in);

void to_proto(const Reply& in, v1::Reply* out);
Reply from_proto(const v1::Reply& in);

}  // namespace mailhook::wire
