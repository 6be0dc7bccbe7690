// The one line both daemons write when a reply refuses or defers (and,
// for shadow scripts, when it would have): Postfix-style, one set of key
// names (docs/logging.md), every client value escaped here; and the
// sender-authentication fields policyd's transaction line ends with.
// Pure: builds the text, the caller writes it. Never reads a clock.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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

// The sender-authentication checks a policy ran in one transaction, as
// the checks saw them (raw: auth_fields() escapes): the last spf.check,
// dkim.verify and dmarc.check of the transaction (policyd's lua_api).
struct AuthResults {
  struct Verdict {
    std::string result;  // "pass", "fail", ... (RFC 8601 2.7 words)
    std::string domain;  // SPF: the domain checked; DKIM: d=; "" prints nothing
  };
  struct Dmarc {
    std::string result;       // "pass", "fail", "none", "temperror", "permerror"
    std::string from_domain;  // the RFC5322.From domain checked
    std::string policy;       // p= (or sp=) as applied; "" when no record applied
    std::string disposition;  // what the policy asks for this message (pct applied)
  };
  std::optional<Verdict> spf;
  std::optional<std::vector<Verdict>> dkim;  // one per signature; empty: the message had none
  std::size_t dkim_cut = 0;                  // signatures past the ones kept, counted only
  std::optional<Dmarc> dmarc;
};

// The checks that ran, each a field: " spf=pass(example.org)
// dkim=pass(example.org),fail(example.net) dmarc=fail(example.org,p=reject,dis=reject)";
// "" when none ran. Domains are escaped like every field and "(", ")"
// and "," in them too, so a value's inner structure cannot be faked.
std::string auth_fields(const AuthResults& a);

}  // namespace mailhook::log
