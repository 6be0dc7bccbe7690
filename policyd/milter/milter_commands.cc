// The MTA's commands after CONNECT as SessionEvents (HELO, MAIL, RCPT,
// DATA, unknown ones, the message and its end), and the transaction they
// build: its id, the message bytes sent on as MESSAGE_CHUNK events, RESET
// when it ends. Methods of Connection (milter_connection.h); they run on
// the connection's thread and never block it.
#include "policyd/milter/milter_connection.h"

#include <string>
#include <vector>

#include "mailcore/telemetry/decision_log.h"
#include "mailcore/telemetry/log.h"
#include "policyd/milter/milter_mapping.h"

namespace mailhook::policyd::milter {

constexpr std::size_t kChunk = 64 * 1024;  // message bytes per MESSAGE_CHUNK event

asio::awaitable<void> Connection::on_helo(std::string_view d) {
  const auto s = strings_of(d);
  helo_ = s.empty() ? std::string() : std::string(s[0]);
  absorb_macros();
  const EventKind kind = helo_kind(caps());
  if (!caps().events.has(kind)) {
    no_reply(flag::kNrHelo);
    co_return;
  }
  SessionEvent e;
  e.kind = kind;
  e.argument = helo_;
  e.input = std::string(kind == EventKind::Ehlo ? "EHLO " : "HELO ") + helo_;
  auto dec = co_await ask(std::move(e));
  answer(dec);
}

constexpr std::size_t kMaxLoggedRecipients = 1000;  // of one transaction, for the log lines

asio::awaitable<void> Connection::on_envelope(std::string_view d, EventKind kind, unsigned long nr_flag) {
  if (kind == EventKind::Mail) begin_transaction();
  absorb_macros();
  std::vector<std::string> args;
  for (std::string_view a : strings_of(d)) args.emplace_back(a);
  SessionEvent e;
  e.kind = kind;
  parse_envelope_args(args, e.address, e.parameters);
  // The envelope is kept whether or not a script listens: the log lines
  // name sender and recipients. A recipient a script refuses is not kept.
  if (kind == EventKind::Mail) sender_ = e.address;
  const std::string rcpt = kind == EventKind::Rcpt ? e.address : std::string();
  if (!caps().events.has(kind)) {
    if (kind == EventKind::Rcpt && recipients_.size() < kMaxLoggedRecipients) recipients_.push_back(rcpt);
    no_reply(nr_flag);
    co_return;
  }
  e.input = kind == EventKind::Mail ? "MAIL FROM:" : "RCPT TO:";
  for (std::size_t i = 0; i < args.size(); ++i) e.input += (i ? " " : "") + args[i];
  auto dec = co_await ask(std::move(e));
  const bool refused = !dec || (dec->action == Decision::Action::Reply && dec->reply.code >= 400);
  if (kind == EventKind::Rcpt && !refused && recipients_.size() < kMaxLoggedRecipients) recipients_.push_back(rcpt);
  answer(dec);
}

asio::awaitable<void> Connection::on_simple(EventKind kind, const char* input, unsigned long nr_flag) {
  absorb_macros();
  if (!caps().events.has(kind)) {
    no_reply(nr_flag);
    co_return;
  }
  SessionEvent e;
  e.kind = kind;
  e.input = input;
  auto dec = co_await ask(std::move(e));
  answer(dec);
}

asio::awaitable<void> Connection::on_unknown(std::string_view d) {
  absorb_macros();
  if (!caps().events.has(EventKind::Unknown)) {
    no_reply(flag::kNrUnkn);
    co_return;
  }
  const auto s = strings_of(d);
  SessionEvent e;
  e.kind = EventKind::Unknown;
  e.input = s.empty() ? std::string() : std::string(s[0]);
  e.argument = e.input;
  auto dec = co_await ask(std::move(e));
  answer(dec);
}

asio::awaitable<void> Connection::on_end_of_message() {
  absorb_macros();
  if (state_.refusal() != Refusal::None) {  // past a --milter-max-* limit: no hook sees it
    answer(Decision::respond(0, refusal_reply(state_.refusal())));
    reset_transaction();
    co_return;
  }
  if (!caps().events.has(EventKind::EndOfMessage)) {
    queue(reply::kContinue);
    reset_transaction();
    co_return;
  }
  flush_message();
  SessionEvent e;
  e.kind = EventKind::EndOfMessage;
  e.message_size = state_.message_size();
  const std::optional<Decision> d = co_await ask(std::move(e), true);  // PROGRESS while hook.dot runs
  const bool refused = !d || (d->action == Decision::Action::Reply && d->reply.code >= 400);
  Modifications m;
  if (!refused) {
    m = append_modifications(out_, d->changes, actions_);
    if (!m.allowed) log::warning("session={} milter: the MTA did not allow {}", id_, m.refused);
  }
  if (!m.allowed) {
    queue(reply::kTempfail);  // half-applied changes must not be delivered
  } else if (m.discard) {
    queue(reply::kDiscard);
  } else {
    answer(d);
  }
  reset_transaction();
}

// -------------------------------------------------------- transactions

void Connection::begin_transaction() {
  transaction_id_ = id_ + "T" + std::to_string(++transactions_);
  pending_bytes_.clear();
  sender_.clear();
  recipients_.clear();
}

// A --milter-max-* limit refused the message: the refusal line, with
// script=limit and the flag, as the front's for its own limits.
void Connection::log_limit_refusal(char letter, Refusal r) {
  if (!log::enabled(log::Level::Notice)) return;
  std::string_view hook = "dot";
  if (letter == cmd::kHeader) hook = "header";
  if (letter == cmd::kEndOfHeader) hook = "eoh";
  if (letter == cmd::kBody) hook = "body";
  const std::string* mta = state_.macro("i");
  const log::DecisionFields f{
      .queue_id = transaction_id_,
      .session = id_,
      .mta_queue_id = mta ? std::string_view(*mta) : std::string_view(),
      .milter = true,
      .client_host = facts_.host,
      .client_address = facts_.address,
      .helo = helo_,
      .from = transaction_id_.empty() ? std::nullopt : std::optional<std::string_view>(sender_),
      .to = recipients_,
      .hook = hook,
      .script = "limit",
      .limit = refusal_flag(r),
  };
  log::notice("{}", log::decision_line("reject", f, refusal_reply(r)));
}

void Connection::reset_transaction() {
  if (caps().events.has(EventKind::Reset)) {
    SessionEvent e;
    e.kind = EventKind::Reset;
    notify(std::move(e));
  }
  transaction_id_.clear();
  pending_bytes_.clear();
  sender_.clear();
  recipients_.clear();
  state_.end_message();
}

void Connection::add_message_bytes(std::string_view bytes) {
  if (!caps().wants_message) return;
  pending_bytes_.append(bytes);
  if (pending_bytes_.size() >= kChunk) flush_message();
}

void Connection::flush_message() {
  if (pending_bytes_.empty()) return;
  SessionEvent e;
  e.kind = EventKind::MessageChunk;
  e.chunk = std::move(pending_bytes_);
  pending_bytes_.clear();
  notify(std::move(e));
}

}  // namespace mailhook::policyd::milter
