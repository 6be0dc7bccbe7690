// An accepted message on its way out: the envelope and the message bytes
// (dot-unstuffed, CRLF). Plus the edits a policy asks for at end of
// message and the Received header (RFC 5321 4.4). Pure: no I/O.
#pragma once

#include <string>
#include <vector>

#include "mailcore/event/event.h"

namespace mailhook::front {

struct Envelope {
  std::string session_id;
  std::string queue_id;        // the transaction id
  std::string client_address;
  std::uint32_t client_port = 0;
  std::string client_host;
  std::string helo;
  bool esmtp = false;
  std::string tls_protocol;    // empty: no TLS
  std::string tls_cipher;
  std::string auth_user;       // empty: not authenticated
  std::string sender;
  std::vector<std::string> recipients;
  std::vector<Parameter> mail_parameters;                // BODY, SMTPUTF8, RET, ENVID…
  std::vector<std::vector<Parameter>> rcpt_parameters;   // NOTIFY, ORCPT; parallel to recipients
  std::string quarantine;      // non-empty: quarantined, with this reason
  bool discard = false;
};

// "Received: from helo (host [ip]) by me (mailhook) with ESMTP id X for <r>; date\r\n"
std::string received_header(const Envelope& e, const std::string& local_host);

// " NAME=value NAME2" as in a MAIL or RCPT command; "" for none.
std::string parameter_text(const std::vector<Parameter>& params);

// Applies the policy's changes to the envelope and the message.
void apply_changes(const std::vector<MessageChange>& changes, Envelope& envelope, std::string& message);

// "NOTIFY=NEVER ORCPT=rfc822;a@b" -> parameters (names upper-cased).
std::vector<Parameter> esmtp_arguments(std::string_view text);

}  // namespace mailhook::front
