// The per-transaction and per-session log lines of policyd.
#include "policyd/lua_runtime/activity.h"

#include "mailcore/telemetry/decision_log.h"
#include "mailcore/telemetry/log.h"
#include "policyd/lua_runtime/refusal_log.h"

namespace mailhook::policyd {
namespace {

std::string code_of(const std::optional<Decision>& d) {
  if (!d || d->action == Decision::Action::Continue) return "-";
  return std::to_string(d->reply.code);
}

constexpr std::size_t kMaxRecipients = 50;  // named on the transaction line; more are counted

}  // namespace

ActivityLog::ActivityLog(const SessionStart& start, RuntimeMetrics& metrics, log::AuthResults& auth)
    : session_id_(log::escape(start.session_id)), milter_(start.shape == Shape::Milter), metrics_(metrics), auth_(auth) {
  note_client(start.client);
}

// Every value below came from the client, the MTA or the gRPC peer:
// escaped once here, so no line of this log can be forged.
void ActivityLog::note_client(const ClientFacts& c) {
  if (!c.address.empty()) client_ = log::client_token(c.host, c.address);
  const std::string_view mta = mta_queue_id(c);
  if (!mta.empty()) mta_queue_id_ = log::escape(mta);
}

// Every event carries the front's (or milter's) transaction id; RSET's
// reset and the close carry none of their own.
bool ActivityLog::starts_transaction(const SessionEvent& e) const {
  return e.kind != EventKind::Reset && e.kind != EventKind::Close && log::escape(e.transaction_id) != transaction_id_;
}

void ActivityLog::before(const SessionEvent& e) {
  if (!starts_transaction(e)) return;
  transaction_ended();
  transaction_id_ = log::escape(e.transaction_id);
}

void ActivityLog::record(const SessionEvent& e, const std::optional<Decision>& d) {
  if (d) metrics_.decision(*d);
  if (e.client) note_client(*e.client);
  if (!e.helo.empty()) helo_ = log::escape(e.helo);
  if (starts_transaction(e)) {  // before() saw it already, unless the caller skipped it
    transaction_ended();
    transaction_id_ = log::escape(e.transaction_id);
  }
  // MAIL is sent only when a script listens to it; later events carry the sender.
  if (sender_.empty() && !transaction_id_.empty() && e.kind != EventKind::Mail && !e.sender.empty()) {
    sender_ = "<" + log::escape(e.sender) + ">";
  }
  switch (e.kind) {
    case EventKind::Helo:
    case EventKind::Ehlo:
      helo_ = log::escape(e.argument);  // the name being tried; later events carry the one in effect
      break;
    case EventKind::Auth:
      if (d && d->reply.code == 235 && e.client) auth_user_ = log::escape(e.client->auth_user);
      break;
    case EventKind::Mail:
      sender_ = "<" + log::escape(e.address) + ">";
      mail_code_ = code_of(d);
      break;
    case EventKind::Rcpt:
      if (rcpts_.size() < kMaxRecipients) {
        rcpts_.push_back("<" + log::escape(e.address) + ">:" + code_of(d));
      } else {
        ++rcpts_cut_;
      }
      break;
    case EventKind::Data: data_code_ = code_of(d); break;
    case EventKind::MessageChunk: size_ += e.chunk.size(); break;
    case EventKind::EndOfMessage:
      // RCPT is sent only when a script listens to it: name the accepted ones.
      if (rcpts_.empty()) {
        for (const std::string& r : e.recipients) {
          if (rcpts_.size() == kMaxRecipients) {
            ++rcpts_cut_;
            continue;
          }
          rcpts_.push_back("<" + log::escape(r) + ">:-");
        }
      }
      eom_code_ = code_of(d);
      if (d) changes_ = d->changes.size();
      if (e.message_size) size_ = e.message_size;
      transaction_ended();
      break;
    case EventKind::Reset:
    case EventKind::Close:
      transaction_ended();
      break;
    case EventKind::Rset:
    case EventKind::Noop:
    case EventKind::Help:
    case EventKind::Quit:
    case EventKind::Vrfy:
    case EventKind::Expn:
    case EventKind::Unknown:
    case EventKind::Starttls:
    case EventKind::Xclient:
    case EventKind::Error:
      break;
  }
}

void ActivityLog::transaction_ended() {
  if (!transaction_id_.empty() && (!mail_code_.empty() || !rcpts_.empty())) {
    ++transactions_;
    std::string to = rcpts_.empty() ? std::string("-") : fmt::format("{}", fmt::join(rcpts_, ","));
    if (rcpts_cut_ != 0) to += fmt::format(",...(+{})", rcpts_cut_);
    // The checks come last: a line without them keeps its fields in place.
    log::info("queue_id={} session={}{} client={} helo={} from={} mail={} to={} data={} eom={} size={} changes={}{}",
              transaction_id_, session_id_, milter_ ? " mta_queue_id=" + (mta_queue_id_.empty() ? "-" : mta_queue_id_) : "",
              client_, helo_.empty() ? "-" : helo_, sender_.empty() ? "-" : sender_, mail_code_.empty() ? "-" : mail_code_,
              to, data_code_.empty() ? "-" : data_code_, eom_code_.empty() ? "-" : eom_code_, size_, changes_,
              log::auth_fields(auth_));
  }
  auth_ = {};
  transaction_id_.clear();
  sender_.clear();
  mail_code_.clear();
  data_code_.clear();
  eom_code_.clear();
  rcpts_.clear();
  rcpts_cut_ = 0;
  mta_queue_id_.clear();
  changes_ = 0;
  size_ = 0;
}

void ActivityLog::session_ended() {
  transaction_ended();
  log::info("session={} client={} helo={} auth={} transactions={} duration_ms={} end", session_id_, client_,
            helo_.empty() ? "-" : helo_, auth_user_.empty() ? "-" : auth_user_, transactions_,
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count());
}

}  // namespace mailhook::policyd
