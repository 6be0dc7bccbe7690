// The one line both daemons write when a reply refuses or defers (and,
// for shadow scripts, when it would have): Postfix-style, one set of key
// names (docs/logging.md), every client value escaped here. Pure: builds
// the text, the caller writes it with log::notice. Never reads a clock.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "mailcore/event/event.h"

namespace mailhook::log {

// What a refusal line names. Empty views print as "-".
struct DecisionFields {
  std::string_view queue_id;      // our transaction id
  std::string_view session;       // our session id
  std::string_view mta_queue_id;  // milter mode: the MTA's queue id (macro i)
  bool milter = false;            // print mta_queue_id (milter mode only)
  std::string_view client_host;   // "" prints as "unknown", as Postfix does
  std::string_view client_address;
  std::string_view helo;
  std::optional<std::string_view> from;  // nullopt: no MAIL yet ("-"); "" is <>
  std::span<const std::string> to;       // empty: "-"
  std::string_view hook;          // "rcpt", "dot", "accept"
  std::string_view script;        // a script's name, "limit", "default", ...
  std::string_view limit;         // with script "limit": the limit's name
};

// "reject: queue_id=... session=... client=host[addr] helo=... from=<...>
// to=<...> hook=rcpt script=policy.lua reply="550 5.7.1 ..."". `verb` is
// "reject" or "would_reject". reply= is last and quoted; its text keeps
// spaces, shows line breaks of a multi-line reply as \n and a quote as \".
std::string decision_line(std::string_view verb, const DecisionFields& f, const Reply& reply);

// The full reply as one quoted log value (without the quotes).
std::string reply_text(const Reply& reply);

// client=host[addr] as Postfix writes it, escaped.
std::string client_token(std::string_view host, std::string_view address);

// Recipients as "<a>,<b>", at most `max` of them, then ",...(+N)".
std::string recipient_list(std::span<const std::string> to, std::size_t max = 50);

}  // namespace mailhook::log
