// The decision rules (see reply_rules.h): pure functions over a Decision,
// a Step and the SessionMachine. Never logs, never blocks.
#include "mailcore/session/reply_rules.h"

#include "mailcore/smtp/reply_text.h"

namespace mailhook::session {

std::string hook_of(EventKind kind) {
  return kind == EventKind::EndOfMessage ? std::string("dot") : std::string(event_kind_name(kind));
}

ChosenReply choose_reply(const Decision& d, const Reply& fallback, bool answers_data) {
  ChosenReply out{.reply = fallback, .close = d.disconnect};
  if (d.action != Decision::Action::Reply) return out;
  const smtp::ReplyError e = smtp::validate(d.reply);
  // 354 only answers DATA, and DATA only 354 or a refusal (RFC 5321 4.3.2).
  const bool fits = answers_data ? (d.reply.code == 354 || d.reply.code >= 400) : d.reply.code / 100 != 3;
  if (e != smtp::ReplyError::None || !fits) {
    out.invalid = e != smtp::ReplyError::None ? smtp::reply_error_text(e) : std::string_view("wrong class for the command");
    out.close = false;
    return out;
  }
  out.reply = d.reply;
  out.by_policy = true;
  if (d.reply.code == 421) out.close = true;
  return out;
}

Limits limits_of(const SessionLimits& l) { return {l.max_message_size, l.max_recipients, l.max_line_length}; }

ChosenReply command_reply(SessionMachine& machine, Step& step, const Decision* d) {
  ChosenReply out{.reply = step.default_reply};
  if (d) {
    const bool answers_data = step.verb == smtp::Verb::Data;  // the one command whose event is Data
    if (d->limits) {
      machine.set_limits(limits_of(*d->limits));
      if (step.verb == smtp::Verb::Ehlo) step.default_reply = machine.ehlo_reply(step.argument);
    }
    // VPOP3 GetEHLOCapabilities: the policy's keywords replace ours.
    if (step.verb == smtp::Verb::Ehlo && !d->ehlo_keywords.empty() && step.default_reply.code == 250) {
      step.default_reply.lines.resize(1);
      step.default_reply.lines.insert(step.default_reply.lines.end(), d->ehlo_keywords.begin(), d->ehlo_keywords.end());
    }
    out = choose_reply(*d, step.default_reply, answers_data);
    // A policy reply equal to the default counts as the script's (the
    // refusal line names it) only where the policy may decide.
    out.by_policy = d->action == Decision::Action::Reply && out.reply == d->reply;
  }
  if (!step.policy_may_decide) {
    out.reply = step.default_reply;
    out.by_policy = false;
  }
  if (step.verb == smtp::Verb::Quit || out.reply.code == 421) out.close = true;
  return out;
}

bool keeps_prediction(const SessionEvent& event, const Decision& d) {
  // Message changes only apply at end of message; a decision carrying any
  // is still not counted on, should one ever change the envelope sooner.
  if (d.skipped || d.disconnect || d.limits || !d.changes.empty() || !event.default_reply) return false;
  const ChosenReply c = choose_reply(d, *event.default_reply, event.kind == EventKind::Data);
  return !c.close && c.reply.code / 100 == event.default_reply->code / 100;
}

ChosenReply connect_reply(const Decision& d, const Reply& greeting) {
  ChosenReply out = choose_reply(d, greeting);
  if (out.reply.code >= 400) out.close = true;
  return out;
}

Reply message_reply(const Reply& policy, const Reply& delivered) {
  if (delivered.code < 300 && policy.code != 0) return policy;
  return delivered;
}

}  // namespace mailhook::session
