// events_ahead (see lookahead.h): a copied machine commits each predicted
// command with its default reply, exactly as the front commits an accept.
// Never touches the caller's machine; bounded by `depth` lines.
#include "mailcore/session/lookahead.h"

#include "mailcore/smtp/command.h"

namespace mailhook::session {
namespace {

// A default reply the front's commit treats as an accept (RFC 5321 4.3.2:
// 250 to MAIL and RCPT, 354 to DATA), decided by the machine alone.
bool predicts_accept(const Step& s) {
  if (!s.policy_may_decide || !s.limit.empty() || s.starts_auth || s.starts_xclient) return false;
  if (s.verb == smtp::Verb::Mail || s.verb == smtp::Verb::Rcpt) return s.default_reply.code / 100 == 2;
  if (s.verb == smtp::Verb::Data) return s.default_reply.code == 354;
  return false;
}

}  // namespace

std::vector<SessionEvent> events_ahead(const SessionMachine& machine, const Step& step, std::string_view pipelined,
                                       std::size_t depth, const std::string& next_transaction_id) {
  std::vector<SessionEvent> ahead;
  if (depth == 0 || step.verb == smtp::Verb::Data || !predicts_accept(step)) return ahead;
  SessionMachine predicted = machine;  // plain data: the copy shares nothing
  predicted.commit(step, step.default_reply);
  std::size_t pos = 0;
  for (std::size_t lines = 0; lines < depth && ahead.size() < depth; ++lines) {
    const std::size_t eol = pipelined.find('\n', pos);
    if (eol == std::string_view::npos || eol + 1 - pos > smtp::kMaxCommandLine) break;
    std::string_view line = pipelined.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = eol + 1;
    Step next = predicted.on_command(line, next_transaction_id);
    if (!predicts_accept(next)) break;
    if (next.event) {
      next.event->speculative = true;
      ahead.push_back(std::move(*next.event));
    }
    if (next.verb == smtp::Verb::Data) break;
    predicted.commit(next, next.default_reply);
  }
  return ahead;
}

}  // namespace mailhook::session
