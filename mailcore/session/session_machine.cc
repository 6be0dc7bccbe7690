// The command table of the session: sequencing (503 5.5.1), limits
// (452 4.5.3, 552 5.3.4) and each command's default reply.
#include "mailcore/session/session_machine.h"

#include "mailcore/smtp/ascii.h"
#include "mailcore/smtp/xtext.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace mailhook::session {
namespace {

using smtp::Verb;

Reply reply(int code, std::string enhanced, std::string text) {
  return Reply{code, std::move(enhanced), {std::move(text)}};
}

const Reply kBadSequence = reply(503, "5.5.1", "Bad sequence of commands");

EventKind kind_of(Verb v) {
  switch (v) {
    case Verb::Helo: return EventKind::Helo;
    case Verb::Ehlo: return EventKind::Ehlo;
    case Verb::Mail: return EventKind::Mail;
    case Verb::Rcpt: return EventKind::Rcpt;
    case Verb::Data: return EventKind::Data;
    case Verb::Rset: return EventKind::Rset;
    case Verb::Noop: return EventKind::Noop;
    case Verb::Quit: return EventKind::Quit;
    case Verb::Help: return EventKind::Help;
    case Verb::Vrfy: return EventKind::Vrfy;
    case Verb::Expn: return EventKind::Expn;
    case Verb::Starttls:
    case Verb::Auth:
    case Verb::Xclient:
    case Verb::Bdat:
    case Verb::Unknown:
      return EventKind::Unknown;
  }
  return EventKind::Unknown;
}

bool positive(const Reply& r) { return r.code >= 200 && r.code < 400; }

bool one_of(const std::string& v, std::initializer_list<std::string_view> allowed) {
  for (auto a : allowed) {
    if (smtp::iequals(v, a)) return true;
  }
  return false;
}

// The MAIL parameters of the extensions we advertise: SIZE (RFC 1870),
// BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET/ENVID (RFC 3461), AUTH (RFC
// 4954 5). Anything else is 555 5.5.4 (RFC 5321 4.1.1.11).
bool valid_mail_parameter(const Parameter& p) {
  if (p.name == "SIZE") return !p.value.empty() && p.value.find_first_not_of("0123456789") == std::string::npos;
  if (p.name == "BODY") return one_of(p.value, {"7BIT", "8BITMIME"});
  if (p.name == "SMTPUTF8") return p.value.empty();
  if (p.name == "RET") return one_of(p.value, {"FULL", "HDRS"});
  if (p.name == "ENVID" || p.name == "AUTH") return !p.value.empty();
  return false;
}

// RCPT: NOTIFY and ORCPT (RFC 3461 4.1, 4.2).
bool valid_rcpt_parameter(const Parameter& p) {
  if (p.name == "NOTIFY") {
    if (one_of(p.value, {"NEVER"})) return true;
    std::size_t start = 0;
    while (start <= p.value.size()) {
      const std::size_t comma = p.value.find(',', start);
      const std::string item = p.value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!one_of(item, {"SUCCESS", "FAILURE", "DELAY"})) return false;
      if (comma == std::string::npos) return true;
      start = comma + 1;
    }
    return false;
  }
  if (p.name == "ORCPT") return p.value.find(';') != std::string::npos;
  return false;
}

const Reply kBadParameter{555, "5.5.4", {"Unsupported or malformed parameter"}};

// ENVID and ORCPT go on to the smart host verbatim: only well-formed,
// bounded xtext may (RFC 3461 4.2, 4.4), so nothing rides along into the
// relayed MAIL/RCPT line.
std::optional<Reply> bad_dsn_parameter(const Parameter& p) {
  if (p.name == "ENVID" && !smtp::is_valid_envid(p.value)) {
    return reply(501, "5.5.4", "Malformed ENVID parameter (RFC 3461 4.4: xtext, at most 100 characters)");
  }
  if (p.name == "ORCPT" && !smtp::is_valid_orcpt(p.value)) {
    return reply(501, "5.5.4", "Malformed ORCPT parameter (RFC 3461 4.2: addr-type;xtext, at most 500 characters)");
  }
  return std::nullopt;
}

}  // namespace

SessionEvent SessionMachine::make_event(EventKind kind, std::string_view line, const smtp::Command& cmd) {
  SessionEvent e;
  e.seq = ++seq_;
  e.kind = kind;
  e.wants_reply = true;
  e.input = std::string(line);
  e.argument = cmd.argument;
  e.address = cmd.address;
  e.parameters = cmd.parameters;
  e.transaction_id = transaction_id_;
  e.helo = helo_;
  stamp_envelope(e);
  return e;
}

SessionEvent SessionMachine::notification(EventKind kind) {
  SessionEvent e;
  e.seq = ++seq_;
  e.kind = kind;
  e.transaction_id = transaction_id_;
  e.helo = helo_;
  stamp_envelope(e);
  return e;
}

// The envelope so far, for policyd's log lines: MAIL and RCPT reach
// policyd only when a script listens to them.
void SessionMachine::stamp_envelope(SessionEvent& e) const {
  if (transaction_id_.empty()) return;
  e.sender = sender_;
  if (e.kind == EventKind::Data || e.kind == EventKind::EndOfMessage) e.recipients = recipients_;
}

Reply SessionMachine::ehlo_reply(const std::string& arg) const {
  // RFC 5321 4.1.1.1 and the extensions of SPEC: PIPELINING (RFC 2920),
  // SIZE (RFC 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034),
  // SMTPUTF8 (RFC 6531), DSN (RFC 3461: passed on to a smart host that has it).
  Reply r{250, "", {host_ + " Hello " + arg, "PIPELINING", "SIZE " + std::to_string(limits_.max_message_size),
                    "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN"}};
  if (tls_offered_ && !tls_active_) r.lines.push_back("STARTTLS");  // RFC 3207 4
  if (auth_offered()) r.lines.push_back("AUTH PLAIN LOGIN");           // RFC 4954 3
  if (xclient_allowed_) r.lines.push_back("XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT");
  return r;
}

Step SessionMachine::on_command(std::string_view line, const std::string& next_transaction_id) {
  const smtp::Command cmd = smtp::parse_command(line);
  Step step;
  step.verb = cmd.verb;
  step.argument = cmd.argument;
  step.address = cmd.address;
  step.parameters = cmd.parameters;
  if (cmd.error != smtp::ParseError::None) {
    step.default_reply = smtp::parse_error_reply(cmd);
    return step;
  }
  auto sequence_error = [&] {
    step.default_reply = kBadSequence;
    return step;
  };
  switch (cmd.verb) {
    case Verb::Helo:
      step.default_reply = reply(250, "", host_);
      break;
    case Verb::Ehlo:
      step.default_reply = ehlo_reply(cmd.argument);
      break;
    case Verb::Mail: {
      if (state_ == State::Connected || state_ == State::Mail || state_ == State::Rcpt) return sequence_error();
      for (const auto& p : cmd.parameters) {
        if (auto bad = bad_dsn_parameter(p)) {
          step.default_reply = *bad;
          return step;
        }
        if (!valid_mail_parameter(p)) {
          step.default_reply = kBadParameter;
          return step;
        }
        // RFC 1870 6: a declared size over the limit gets 552.
        if (p.name == "SIZE") {
          std::uint64_t declared = 0;
          std::from_chars(p.value.data(), p.value.data() + p.value.size(), declared);
          if (limits_.max_message_size != 0 && declared > limits_.max_message_size) {
            step.default_reply = reply(552, "5.3.4", "Message size exceeds fixed limit");
            step.limit = "--max-message-size";
            return step;
          }
        }
      }
      pending_transaction_id_ = next_transaction_id;
      step.default_reply = reply(250, "2.1.0", "Ok");
      break;
    }
    case Verb::Rcpt:
      if (state_ != State::Mail && state_ != State::Rcpt) return sequence_error();
      for (const auto& p : cmd.parameters) {
        if (auto bad = bad_dsn_parameter(p)) {
          step.default_reply = *bad;
          return step;
        }
        if (!valid_rcpt_parameter(p)) {
          step.default_reply = kBadParameter;
          return step;
        }
      }
      if (limits_.max_recipients != 0 && recipients_.size() >= limits_.max_recipients) {
        step.default_reply = reply(452, "4.5.3", "Too many recipients");
        step.limit = "--max-recipients";
        return step;
      }
      step.default_reply = reply(250, "2.1.5", "Ok");
      break;
    case Verb::Data:
      if (state_ != State::Rcpt) {
        if (state_ == State::Mail) {
          step.default_reply = reply(554, "5.5.1", "No valid recipients");
          return step;
        }
        return sequence_error();
      }
      step.default_reply = reply(354, "", "End data with <CR><LF>.<CR><LF>");
      break;
    case Verb::Rset: step.default_reply = reply(250, "2.0.0", "Ok"); break;
    case Verb::Noop: step.default_reply = reply(250, "2.0.0", "Ok"); break;
    case Verb::Quit: step.default_reply = reply(221, "2.0.0", "Bye"); break;
    case Verb::Help: step.default_reply = reply(214, "2.0.0", "See RFC 5321"); break;
    case Verb::Vrfy: step.default_reply = reply(252, "2.5.0", "Cannot VRFY user, but will accept message"); break;
    case Verb::Expn: step.default_reply = reply(502, "5.5.1", "EXPN not available"); break;
    case Verb::Starttls:
      if (tls_offered_ && !tls_active_) {
        // RFC 3207 4: not inside a transaction.
        if (state_ == State::Mail || state_ == State::Rcpt) return sequence_error();
        step.default_reply = reply(220, "2.0.0", "Ready to start TLS");
        return step;  // the policy hears of it once the handshake is done
      }
      step.default_reply = tls_active_ ? reply(503, "5.5.1", "TLS already active")
                                       : reply(502, "5.5.1", "STARTTLS not available");
      return step;
    case Verb::Auth: {
      // RFC 4954 4: not before EHLO, not twice, not in a transaction.
      if (!auth_offered()) {
        step.default_reply = reply(503, "5.5.1", "Authentication not enabled");
        return step;
      }
      if (state_ == State::Connected || state_ == State::Mail || state_ == State::Rcpt || !auth_user_.empty()) {
        return sequence_error();
      }
      const std::string mech = smtp::ascii_upper(cmd.argument.substr(0, cmd.argument.find(' ')));
      if (mech != "PLAIN" && mech != "LOGIN") {
        step.default_reply = reply(504, "5.5.4", "Unrecognized authentication type");
        return step;
      }
      step.default_reply = reply(535, "5.7.8", "Authentication credentials invalid");
      step.starts_auth = true;
      return step;
    }
    case Verb::Xclient:
      if (!xclient_allowed_) {
        step.default_reply = reply(550, "5.7.0", "Insufficient authorization");
        return step;
      }
      if (state_ == State::Mail || state_ == State::Rcpt) return sequence_error();
      step.default_reply = reply(220, "", host_ + " ESMTP mailhook");
      step.starts_xclient = true;
      return step;
    case Verb::Bdat:
    case Verb::Unknown:
      step.default_reply = reply(502, "5.5.2", "Error: command not recognized");
      break;
  }
  step.policy_may_decide = true;
  const EventKind kind = kind_of(cmd.verb);
  if (listened_.has(kind)) {
    step.event = make_event(kind, line, cmd);
    if (cmd.verb == Verb::Mail) step.event->transaction_id = pending_transaction_id_;
    step.event->default_reply = step.default_reply;
  }
  return step;
}

void SessionMachine::reset_transaction() {
  sender_.clear();
  recipients_.clear();
  mail_parameters_.clear();
  rcpt_parameters_.clear();
  transaction_id_.clear();
  if (state_ == State::Mail || state_ == State::Rcpt) state_ = State::Greeted;
}

// smtpe: hook.reset runs on RSET, HELO, EHLO and after every end of message,
// whether or not a transaction was open.
std::optional<SessionEvent> SessionMachine::end_transaction() {
  reset_transaction();
  if (!listened_.has(EventKind::Reset)) return std::nullopt;
  return notification(EventKind::Reset);
}

std::optional<SessionEvent> SessionMachine::commit(const Step& step, const Reply& final_reply) {
  if (final_reply.code == 421) {
    state_ = State::Closing;
    return std::nullopt;
  }
  switch (step.verb) {
    case Verb::Helo:
    case Verb::Ehlo:
      if (!positive(final_reply)) return std::nullopt;
      helo_ = step.argument;
      esmtp_ = step.verb == Verb::Ehlo;
      state_ = State::Greeted;
      return end_transaction();
    case Verb::Rset:
      if (!positive(final_reply)) return std::nullopt;
      return end_transaction();
    case Verb::Mail:
      if (positive(final_reply) && step.policy_may_decide) {
        transaction_id_ = pending_transaction_id_;
        sender_ = step.address;
        mail_parameters_ = step.parameters;
        state_ = State::Mail;
      }
      return std::nullopt;
    case Verb::Rcpt:
      if (positive(final_reply) && step.policy_may_decide) {
        recipients_.push_back(step.address);
        rcpt_parameters_.push_back(step.parameters);
        state_ = State::Rcpt;
      }
      return std::nullopt;
    case Verb::Quit:
      state_ = State::Closing;
      return std::nullopt;
    case Verb::Data:
    case Verb::Noop:
    case Verb::Help:
    case Verb::Vrfy:
    case Verb::Expn:
    case Verb::Starttls:
    case Verb::Auth:
    case Verb::Xclient:
    case Verb::Bdat:
    case Verb::Unknown:
      return std::nullopt;
  }
  return std::nullopt;
}

SessionEvent SessionMachine::auth_event(const std::string& line, const std::string& argument, const std::string& user,
                                        const std::string& password) {
  SessionEvent e = notification(EventKind::Auth);
  e.wants_reply = true;
  e.input = line;
  e.argument = argument;
  e.parameters = {{"user", user}, {"password", password}};
  e.default_reply = reply(535, "5.7.8", "Authentication credentials invalid");
  return e;
}

void SessionMachine::restart_after_xclient(std::string helo, bool esmtp, std::string auth_user) {
  reset_transaction();
  helo_ = std::move(helo);
  esmtp_ = esmtp;
  auth_user_ = std::move(auth_user);
  state_ = State::Connected;
}

void SessionMachine::restart_after_tls() {
  reset_transaction();
  helo_.clear();
  auth_user_.clear();  // RFC 3207 4.2: forget what the client said in the clear
  esmtp_ = false;
  tls_active_ = true;
  state_ = State::Connected;
}

SessionEvent SessionMachine::end_of_message_event(std::uint64_t size) {
  SessionEvent e = notification(EventKind::EndOfMessage);
  e.wants_reply = true;
  e.message_size = size;
  return e;
}

}  // namespace mailhook::session
