// The decision rules: how a policy decision, a limit and the session
// machine give the client's reply. One pure place used by the front
// (frontend/server) and by policyd's --test (policyd/testing/case_runner.cc)
// so both answer alike. No I/O, no clock, no log: callers log what the
// result says (an invalid reply, new limits).
#pragma once

#include <string>
#include <string_view>

#include "mailcore/event/event.h"
#include "mailcore/session/session_machine.h"

namespace mailhook::session {

// A reply chosen between the policy's and the default.
struct ChosenReply {
  Reply reply;
  bool close = false;        // the session ends after this reply (421 or disconnect)
  bool by_policy = false;    // the reply is the policy's own (a script decided)
  std::string_view invalid;  // non-empty: the policy's reply was refused (why); the default went out
};

// The hook an event runs in policyd ("dot" for the end of message), as
// refusal lines name it.
std::string hook_of(EventKind kind);

// The reply to send for decision `d`: the policy's if it is valid for the
// command, else `fallback`. `answers_data`: the event is DATA, where only
// 354 or a refusal fits (RFC 5321 4.3.2); elsewhere no 3xx fits. 421 or
// a disconnect closes the session.
ChosenReply choose_reply(const Decision& d, const Reply& fallback, bool answers_data = false);

// The limits a decision sets (mailhook.limits), as the machine takes them.
Limits limits_of(const SessionLimits& l);

// The final reply to one command line. `d` is the policy's decision on
// step.event (nullptr when no event was asked). Applies the decision's
// limits to `machine` (the EHLO default follows them) and the policy's
// EHLO keywords (VPOP3 GetEHLOCapabilities), then chooses; a default the
// machine declares final (syntax, sequence, limits) stays. QUIT closes.
// The caller still commits the step with the reply.
ChosenReply command_reply(SessionMachine& machine, Step& step, const Decision* d);

// Whether decision `d` on `event` leaves the session as a front predicted
// when it sent later pipelined events ahead (RFC 2920; session.proto
// Event.speculative): the front's reply is of the default's class, so
// SessionMachine::commit changes the state alike, nothing closes and no
// new limits change later default replies. policyd's chain of
// speculative events breaks exactly when this is false.
bool keeps_prediction(const SessionEvent& event, const Decision& d);

// The greeting for the connect decision; refused (the session ends) when
// the reply is >= 400 or the decision disconnects.
ChosenReply connect_reply(const Decision& d, const Reply& greeting);

// The final reply to a message whose end-of-message decision gave
// `policy` (a choose_reply over an empty fallback) and whose delivery
// gave `delivered`: a 2xx from the policy is the final reply once the
// mail is safe (smtpe); a failed delivery speaks for itself.
Reply message_reply(const Reply& policy, const Reply& delivered);

}  // namespace mailhook::session
