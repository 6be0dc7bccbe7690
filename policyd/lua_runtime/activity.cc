// The per-transaction and per-session log lines of policyd.
#include "policyd/lua_runtime/activity.h"

#include "mailcore/telemetry/log.h"

namespace mailhook::policyd {
namespace {

std::string code_of(const std::optional<Decision>& d) {
  if (!d || d->action == Decision::Action::Continue) return "-";
  return std::to_string(d->reply.code);
}

}  // namespace

ActivityLog::ActivityLog(std::string session_id, std::string client, RuntimeMetrics& metrics)
    : session_id_(log::escape_text(session_id)), client_(log::escape_text(client)), metrics_(metrics) {}

void ActivityLog::record(const SessionEvent& e, const std::optional<Decision>& d) {
  if (d) metrics_.decision(*d);
  // Every value below came from the client (or the gRPC peer): escaped
  // once here, so no line of this log can be forged.
  if (e.client && !e.client->address.empty()) client_ = log::escape_text(e.client->address);
  if (!e.helo.empty()) helo_ = log::escape_text(e.helo);
  if (e.kind != EventKind::Reset && e.kind != EventKind::Close && log::escape_text(e.transaction_id) != transaction_id_) {
    transaction_ended();
    transaction_id_ = log::escape_text(e.transaction_id);
  }
  switch (e.kind) {
    case EventKind::Helo:
    case EventKind::Ehlo:
      helo_ = log::escape_text(e.argument);  // the name being tried; later events carry the one in effect
      break;
    case EventKind::Auth:
      if (d && d->reply.code == 235 && e.client) auth_user_ = log::escape_text(e.client->auth_user);
      break;
    case EventKind::Mail:
      sender_ = "<" + log::escape_text(e.address) + ">";
      mail_code_ = code_of(d);
      break;
    case EventKind::Rcpt:
      rcpts_.push_back("<" + log::escape_text(e.address) + ">:" + code_of(d));
      break;
    case EventKind::Data: data_code_ = code_of(d); break;
    case EventKind::MessageChunk: size_ += e.chunk.size(); break;
    case EventKind::EndOfMessage:
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
    log::info("session={} trans={} client={} from={} mail={} rcpt={} data={} eom={} size={} changes={}", session_id_,
              transaction_id_, client_, sender_.empty() ? "-" : sender_, mail_code_.empty() ? "-" : mail_code_,
              rcpts_.empty() ? "-" : fmt::format("{}", fmt::join(rcpts_, ",")), data_code_.empty() ? "-" : data_code_,
              eom_code_.empty() ? "-" : eom_code_, size_, changes_);
  }
  transaction_id_.clear();
  sender_.clear();
  mail_code_.clear();
  data_code_.clear();
  eom_code_.clear();
  rcpts_.clear();
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
