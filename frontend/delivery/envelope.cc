// Received header and message edits. Header positions count header
// fields, not lines: a folded field is one field.
#include "frontend/delivery/envelope.h"

#include "mailcore/smtp/ascii.h"
#include "mailcore/smtp/command.h"

#include <algorithm>
#include <ctime>

namespace mailhook::front {

std::vector<Parameter> esmtp_arguments(std::string_view text) { return smtp::split_parameters(text); }

namespace {

// RFC 5322 3.3 date-time, in UTC.
std::string rfc5322_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

struct Field {
  std::size_t begin = 0;  // offset of the field's first byte
  std::size_t end = 0;    // offset after its final CRLF
  std::string name;
};

// The header fields of `message` and the offset where the header ends.
std::vector<Field> header_fields(const std::string& message, std::size_t& header_end) {
  std::vector<Field> fields;
  std::size_t pos = 0;
  while (pos < message.size()) {
    const std::size_t eol = message.find("\r\n", pos);
    if (eol == std::string::npos || eol == pos) break;  // blank line: end of header
    const char first = message[pos];
    if ((first == ' ' || first == '\t') && !fields.empty()) {
      fields.back().end = eol + 2;
    } else {
      const std::size_t colon = message.find(':', pos);
      const std::string name = colon != std::string::npos && colon < eol ? message.substr(pos, colon - pos) : "";
      fields.push_back({pos, eol + 2, name});
    }
    pos = eol + 2;
  }
  header_end = pos;
  return fields;
}

std::string field_text(const MessageChange& c) { return c.name + ": " + c.value + "\r\n"; }

}  // namespace

std::string parameter_text(const std::vector<Parameter>& params) {
  std::string out;
  for (const auto& p : params) out += " " + p.name + (p.value.empty() ? "" : "=" + p.value);
  return out;
}

std::string received_header(const Envelope& e, const std::string& local_host) {
  std::string h = "Received: from " + (e.helo.empty() ? std::string("unknown") : e.helo) + " (" +
                  (e.client_host.empty() ? std::string("unknown") : e.client_host) + " [" + e.client_address +
                  "])\r\n\t";
  // RFC 3848: ESMTP, ESMTPS, ESMTPA, ESMTPSA; TLS and AUTH facts as comments.
  if (!e.tls_protocol.empty()) h += "(using " + e.tls_protocol + " with cipher " + e.tls_cipher + ")\r\n\t";
  if (!e.auth_user.empty()) h += "(Authenticated sender: " + e.auth_user + ")\r\n\t";
  h += "by " + local_host + " (mailhook) with " + (e.esmtp ? "ESMTP" : "SMTP") + (e.tls_protocol.empty() ? "" : "S") + (e.auth_user.empty() ? "" : "A") +
       " id " + e.queue_id + "\r\n\t";
  if (e.recipients.size() == 1) h += "for <" + e.recipients.front() + ">; ";
  h += rfc5322_now() + "\r\n";
  return h;
}

void apply_changes(const std::vector<MessageChange>& changes, Envelope& envelope, std::string& message) {
  using K = MessageChange::Kind;
  for (const auto& c : changes) {
    std::size_t header_end = 0;
    std::vector<Field> fields = header_fields(message, header_end);
    switch (c.kind) {
      case K::AddHeader:
        message.insert(header_end, field_text(c));
        break;
      case K::InsertHeader: {
        const std::size_t at = c.index < fields.size() ? fields[c.index].begin : header_end;
        message.insert(at, field_text(c));
        break;
      }
      case K::ChangeHeader: {
        std::uint32_t seen = 0;
        for (const auto& f : fields) {
          if (!smtp::iequals(f.name, c.name) || ++seen != c.index) continue;
          message.replace(f.begin, f.end - f.begin, c.erase ? std::string() : field_text(c));
          break;
        }
        break;
      }
      case K::AddRcpt:
        if (std::find(envelope.recipients.begin(), envelope.recipients.end(), c.value) == envelope.recipients.end()) {
          envelope.recipients.push_back(c.value);
          envelope.rcpt_parameters.resize(envelope.recipients.size());
          envelope.rcpt_parameters.back() = esmtp_arguments(c.name);  // "NOTIFY=NEVER ORCPT=…"
        }
        break;
      case K::DelRcpt:
        envelope.rcpt_parameters.resize(envelope.recipients.size());
        for (std::size_t i = envelope.recipients.size(); i-- > 0;) {
          if (envelope.recipients[i] != c.value) continue;
          envelope.recipients.erase(envelope.recipients.begin() + static_cast<std::ptrdiff_t>(i));
          envelope.rcpt_parameters.erase(envelope.rcpt_parameters.begin() + static_cast<std::ptrdiff_t>(i));
        }
        break;
      case K::ChangeFrom:
        envelope.sender = c.value;
        break;
      case K::ReplaceBody:
        // The body follows the blank line at header_end (RFC 5322 2.1).
        if (message.compare(header_end, 2, "\r\n") == 0) {
          message.replace(header_end + 2, std::string::npos, c.value);
        } else {
          message.append("\r\n").append(c.value);
        }
        break;
      case K::Quarantine:
        envelope.quarantine = c.value;
        break;
      case K::Discard:
        envelope.discard = true;
        break;
    }
  }
}

}  // namespace mailhook::front
