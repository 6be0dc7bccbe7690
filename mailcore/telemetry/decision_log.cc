// The refusal line of both daemons (decision_log.h).
#include "mailcore/telemetry/decision_log.h"

#include <fmt/format.h>

#include "mailcore/telemetry/log.h"

namespace mailhook::log {
namespace {

std::string_view or_dash(std::string_view v) { return v.empty() ? std::string_view("-") : v; }

}  // namespace

std::string reply_text(const Reply& reply) {
  std::string raw = std::to_string(reply.code);
  if (!reply.enhanced.empty()) raw += " " + reply.enhanced;
  for (std::size_t i = 0; i < reply.lines.size(); ++i) {
    raw += i == 0 ? " " : "\n";
    raw += reply.lines[i];
  }
  // escape_text makes '\' "\\", so the "\"" added here always means a quote.
  std::string out;
  for (const char c : escape_text(raw)) {
    if (c == '"') out += '\\';
    out += c;
  }
  return out;
}

std::string client_token(std::string_view host, std::string_view address) {
  return fmt::format("{}[{}]", host.empty() ? std::string("unknown") : escape(host), escape(or_dash(address)));
}

std::string recipient_list(std::span<const std::string> to, std::size_t max) {
  if (to.empty()) return "-";
  std::string out;
  for (std::size_t i = 0; i < to.size() && i < max; ++i) {
    if (i) out += ',';
    out += "<" + escape(to[i]) + ">";
  }
  if (to.size() > max) out += fmt::format(",...(+{})", to.size() - max);
  return out;
}

std::string decision_line(std::string_view verb, const DecisionFields& f, const Reply& reply) {
  std::string line = fmt::format("{}: queue_id={} session={}", verb, escape(or_dash(f.queue_id)), escape(or_dash(f.session)));
  if (f.milter) line += fmt::format(" mta_queue_id={}", escape(or_dash(f.mta_queue_id)));
  line += fmt::format(" client={} helo={} from={} to={} hook={} script={}", client_token(f.client_host, f.client_address),
                      escape(or_dash(f.helo)), f.from ? "<" + escape(*f.from) + ">" : std::string("-"),
                      recipient_list(f.to), escape(or_dash(f.hook)), escape(or_dash(f.script)));
  if (!f.limit.empty()) line += fmt::format(" limit={}", escape(f.limit));
  line += fmt::format(" reply=\"{}\"", reply_text(reply));
  return line;
}

namespace {

// A result word or domain inside a field's value: escape() (one token)
// plus the value's own separators.
std::string inner(std::string_view v) {
  std::string out;
  for (const char c : escape(v)) {
    if (c == '(' || c == ')' || c == ',') {
      out += fmt::format("\\x{:02X}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out;
}

std::string verdict(const AuthResults::Verdict& v) {
  std::string out = inner(or_dash(v.result));
  if (!v.domain.empty()) out += "(" + inner(v.domain) + ")";
  return out;
}

}  // namespace

std::string auth_fields(const AuthResults& a) {
  std::string out;
  if (a.spf) out += " spf=" + verdict(*a.spf);
  if (a.dkim) {
    out += " dkim=";
    if (a.dkim->empty() && a.dkim_cut == 0) out += "none";  // RFC 8601 2.7.1: no signature
    for (std::size_t i = 0; i < a.dkim->size(); ++i) {
      if (i) out += ',';
      out += verdict((*a.dkim)[i]);
    }
    if (a.dkim_cut != 0) out += fmt::format(",...(+{})", a.dkim_cut);
  }
  if (a.dmarc) {
    const AuthResults::Dmarc& d = *a.dmarc;
    out += " dmarc=" + inner(or_dash(d.result));
    std::string detail = inner(d.from_domain);
    if (!d.policy.empty()) {
      detail += (detail.empty() ? "" : ",") + std::string("p=") + inner(d.policy) + ",dis=" + inner(or_dash(d.disposition));
    }
    if (!detail.empty()) out += "(" + detail + ")";
  }
  return out;
}

}  // namespace mailhook::log
