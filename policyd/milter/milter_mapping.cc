// Negotiation, reply and argument mapping of the milter adapter.
#include "policyd/milter/milter_mapping.h"

#include "mailcore/smtp/command.h"

namespace mailhook::policyd::milter {

Negotiation negotiate(const Capabilities& caps, unsigned long mta_actions, unsigned long mta_protocol) {
  using namespace flag;
  const EventSet& ev = caps.events;
  Negotiation n;
  n.actions = (kAddHdrs | kChgHdrs | kAddRcpt | kAddRcptPar | kDelRcpt | kChgFrom | kChgBody | kQuarantine) &
              mta_actions;
  unsigned long p = 0;
  // connect is always called: it carries the client's facts. It needs no
  // reply unless a script decides there.
  if (!caps.connect_hook) p |= kNrConn;
  // HELO always comes, one small packet a session: its name is
  // client.helo in every later hook and the logs' helo=, and the MTA's
  // HELO-stage macros (Postfix: the TLS ones) ride on it. It needs no
  // reply unless hook.helo or hook.ehlo is defined.
  if (!ev.has(EventKind::Helo) && !ev.has(EventKind::Ehlo)) p |= kNrHelo;
  // envfrom always comes: it starts the transaction (client.id_trans,
  // the message file); it needs no reply unless hook.mail is defined.
  if (!ev.has(EventKind::Mail)) p |= kNrMail;
  if (!ev.has(EventKind::Rcpt)) p |= kNoRcpt;
  if (!ev.has(EventKind::Data)) p |= kNoData;
  if (!ev.has(EventKind::Unknown)) p |= kNoUnknown;
  if (!caps.wants_message) {
    p |= kNoHdrs | kNoEoh | kNoBody;
  } else {
    p |= kNrHdr | kNrEoh | kNrBody;  // content hooks are notifications
  }
  // Ask only for what the MTA offers.
  n.protocol = p & mta_protocol;
  if ((mta_protocol & kSkip) && !caps.wants_message) n.protocol |= kSkip;
  return n;
}

EventKind helo_kind(const Capabilities& caps) {
  return caps.events.has(EventKind::Ehlo) ? EventKind::Ehlo : EventKind::Helo;
}

MilterReply milter_reply(const Decision& d) {
  MilterReply r;
  if (d.action != Decision::Action::Reply || d.reply.code < 400) return r;
  r.status = d.reply.code < 500 ? Status::Tempfail : Status::Reject;
  r.code = std::to_string(d.reply.code);
  r.enhanced = d.reply.enhanced;
  for (const std::string& line : d.reply.lines) {
    if (r.lines.size() == 32) break;  // libmilter's smfi_setmlreply limit, kept
    std::string escaped;
    for (char c : line) {
      if (c == '%') escaped += '%';  // Sendmail formats the reply text like printf
      escaped += c;
    }
    r.lines.push_back(std::move(escaped));
  }
  return r;
}

void parse_envelope_args(const std::vector<std::string>& argv, std::string& address,
                         std::vector<Parameter>& parameters) {
  address.clear();
  parameters.clear();
  if (argv.empty()) return;
  std::string_view a = argv[0];
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  address.assign(a);
  // The MTA checked them; split as the front splits its own (one parser).
  for (std::size_t i = 1; i < argv.size(); ++i) parameters.push_back(smtp::split_parameter(argv[i]));
}

std::string header_bytes(std::string_view name, std::string_view value) {
  std::string out(name);
  out += ": ";
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\n' && (i == 0 || value[i - 1] != '\r')) out += '\r';
    out += value[i];
  }
  out += "\r\n";
  return out;
}

std::string milter_header_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\r' && i + 1 < value.size() && value[i + 1] == '\n') continue;
    out += value[i];
  }
  return out;
}

const std::vector<std::string>& known_macros() {
  // Postfix's milter_*_macros defaults and Sendmail's common ones.
  static const std::vector<std::string> kMacros = {
      "j", "_", "v", "i", "{daemon_name}", "{daemon_addr}", "{daemon_port}", "{if_name}", "{if_addr}",
      "{client_addr}", "{client_port}", "{client_name}", "{client_ptr}", "{client_resolve}",
      "{client_connections}", "{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}",
      "{auth_type}", "{auth_authen}", "{auth_ssf}", "{auth_author}", "{mail_mailer}", "{mail_host}",
      "{mail_addr}", "{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}", "{msg_id}"};
  return kMacros;
}

}  // namespace mailhook::policyd::milter
