// SessionMachine: the SMTP session's rules without any I/O (RFC 5321 4.1.4
// order of commands, limits). A parsed line goes in; out comes the event
// for the policy (if the scripts listen to it) and the default reply. Once
// the final reply is known, commit() applies the state change it allows.
// Never includes Asio, gRPC or Lua; never blocks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailcore/event/event.h"
#include "mailcore/session/limits.h"
#include "mailcore/smtp/command.h"

namespace mailhook::session {

enum class State : std::uint8_t {
  Connected,    // greeting sent, no HELO/EHLO yet
  Greeted,      // HELO/EHLO accepted, no transaction
  Mail,         // MAIL accepted, no recipient yet
  Rcpt,         // at least one RCPT accepted
  Closing,      // QUIT or a closing reply: nothing more is read
};

// What to do with one command line.
struct Step {
  smtp::Verb verb = smtp::Verb::Unknown;
  std::string argument;               // HELO name, …
  std::string address;                // MAIL / RCPT address
  std::vector<Parameter> parameters;  // MAIL / RCPT ESMTP parameters
  std::optional<SessionEvent> event;  // to send to policyd, when listened to
  Reply default_reply;
  bool policy_may_decide = false;     // false: the default is final (syntax, sequence, limits)
  bool starts_auth = false;           // AUTH accepted for an exchange (RFC 4954 4)
  bool starts_xclient = false;        // XCLIENT from an allowed client
  std::string_view limit;             // the limit the default reply enforces ("--max-recipients"), for the log
};

class SessionMachine {
 public:
  SessionMachine(std::string host, Limits limits, EventSet listened)
      : host_(std::move(host)), limits_(limits), listened_(listened) {}

  void set_listened(EventSet e) { listened_ = e; }
  // RFC 3207: STARTTLS is offered while TLS is configured and not active.
  void set_tls(bool offered, bool active) {
    tls_offered_ = offered;
    tls_active_ = active;
  }
  bool tls_active() const { return tls_active_; }
  // RFC 4954: AUTH is offered under TLS, or in the clear when allowed.
  void allow_plaintext_auth(bool allowed) { auth_plaintext_ = allowed; }
  bool auth_offered() const { return tls_active_ || auth_plaintext_; }
  void authenticated(std::string user) { auth_user_ = std::move(user); }
  const std::string& auth_user() const { return auth_user_; }
  // Postfix XCLIENT_README: only for clients in --xclient-hosts.
  void allow_xclient(bool allowed) { xclient_allowed_ = allowed; }
  // After XCLIENT the session starts over as the client it names.
  void restart_after_xclient(std::string helo, bool esmtp, std::string auth_user);
  // The Auth event for an exchange the connection completed.
  SessionEvent auth_event(const std::string& line, const std::string& argument, const std::string& user,
                          const std::string& password);
  // RFC 3207 4.2: after the handshake the session starts over; EHLO again.
  void restart_after_tls();

  // One command line without its line end. `next_transaction_id` is used
  // if the line is a MAIL command that may start a transaction.
  Step on_command(std::string_view line, const std::string& next_transaction_id);

  // The final reply of `step` is known: apply what it allows. Returns the
  // Reset event to send when a transaction ended (RSET, HELO, EHLO).
  std::optional<SessionEvent> commit(const Step& step, const Reply& final_reply);

  // The message after DATA: its event, and the end of the transaction.
  SessionEvent end_of_message_event(std::uint64_t size);
  std::optional<SessionEvent> end_transaction();  // after the final reply to DATA

  // A no-reply event (MessageChunk, Error, Close) carrying the state.
  SessionEvent notification(EventKind kind);

  bool listens(EventKind k) const { return listened_.has(k); }
  State state() const { return state_; }
  const std::string& helo() const { return helo_; }
  const std::string& sender() const { return sender_; }
  const std::vector<std::string>& recipients() const { return recipients_; }
  // ESMTP parameters of MAIL and of each RCPT (parallel to recipients()).
  const std::vector<Parameter>& mail_parameters() const { return mail_parameters_; }
  const std::vector<std::vector<Parameter>>& rcpt_parameters() const { return rcpt_parameters_; }
  std::vector<std::string>& recipients() { return recipients_; }
  const std::string& transaction_id() const { return transaction_id_; }
  void set_sender(std::string s) { sender_ = std::move(s); }
  const Limits& limits() const { return limits_; }
  // New limits from the policy (mailhook.limits); a transaction in
  // progress keeps the recipients it has.
  void set_limits(const Limits& l) { limits_ = l; }
  // The EHLO reply under the limits in effect (SIZE follows them).
  Reply ehlo_reply(const std::string& arg) const;
  bool esmtp() const { return esmtp_; }

 private:
  SessionEvent make_event(EventKind kind, std::string_view line, const smtp::Command& cmd);
  void stamp_envelope(SessionEvent& e) const;
  void reset_transaction();

  std::string host_;
  Limits limits_;
  EventSet listened_;
  State state_ = State::Connected;
  std::string helo_;
  bool esmtp_ = false;
  bool tls_offered_ = false;
  bool tls_active_ = false;
  bool auth_plaintext_ = false;
  bool xclient_allowed_ = false;
  std::string auth_user_;
  std::string sender_;
  std::vector<std::string> recipients_;
  std::vector<Parameter> mail_parameters_;
  std::vector<std::vector<Parameter>> rcpt_parameters_;
  std::string transaction_id_;
  std::string pending_transaction_id_;
  std::uint64_t seq_ = 0;
};

}  // namespace mailhook::session
