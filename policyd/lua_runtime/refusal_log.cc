// The refusal line of one hook's reply, from the session's state.
#include "policyd/lua_runtime/refusal_log.h"

#include <span>

#include "mailcore/telemetry/decision_log.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::policyd {

std::string_view mta_queue_id(const ClientFacts& client) {
  const auto it = client.attributes.find("i");
  return it == client.attributes.end() ? std::string_view() : std::string_view(it->second);
}

void log_refusal(const SessionContext& s, std::string_view verb, std::string_view hook, std::string_view script,
                 const Reply& reply) {
  if (!log::enabled(log::Level::Notice)) return;
  const SessionEvent* e = s.event;
  std::span<const std::string> to;
  if (e && e->kind == EventKind::Rcpt) {
    to = std::span<const std::string>(&e->address, 1);
  } else if (e) {
    to = e->recipients;
  }
  std::optional<std::string_view> from;
  if (e && e->kind == EventKind::Mail) {
    from = e->address;
  } else if (!s.transaction_id.empty()) {
    from = s.sender;
  }
  const log::DecisionFields f{
      .queue_id = s.transaction_id,
      .session = s.start.session_id,
      .mta_queue_id = mta_queue_id(s.start.client),
      .milter = s.start.shape == Shape::Milter,
      .client_host = s.start.client.host,
      .client_address = s.start.client.address,
      .helo = s.helo,
      .from = from,
      .to = to,
      .hook = hook,
      .script = script,
  };
  log::notice("{}", log::decision_line(verb, f, reply));
}

}  // namespace mailhook::policyd
