// The Connection's DATA phase: the DotDecoder over what the client sends,
// message chunks to policyd if it wants them, the end-of-message decision,
// then delivery (spool or smart host), and only then the final reply
// (RFC 5321 4.1.1.4, 6.1: a 250 means the mail is safe). Never blocks:
// the spool's committer thread does the disk writes.
#include "frontend/delivery/envelope.h"
#include "frontend/replies.h"
#include "frontend/server/session_connection.h"
#include "mailcore/event/change_check.h"
#include "mailcore/smtp/dot_decoder.h"
#include "mailcore/telemetry/decision_log.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::front::detail {

asio::awaitable<bool> Connection::data_phase() {
  smtp::DotDecoder decoder(machine_.limits().max_message_size, machine_.limits().max_line_length);
  std::string message;
  std::size_t sent = 0;
  auto send_chunks = [&](bool all) {
    if (!wants_message_ || !machine_.listens(EventKind::MessageChunk) || decoder.fault() != smtp::DotDecoder::Fault::None) return;
    while (message.size() - sent >= kChunk || (all && message.size() > sent)) {
      const std::size_t n = std::min(kChunk, message.size() - sent);
      SessionEvent e = machine_.notification(EventKind::MessageChunk);
      e.chunk.assign(message, sent, n);
      sent += n;
      notify(std::move(e));
    }
  };
  for (;;) {
    const std::size_t used = decoder.feed(in_, message);
    in_.erase(0, used);
    send_chunks(false);
    if (decoder.done()) break;
    const Read r = co_await read_more(std::chrono::seconds(ctx_.config.data_timeout_s));
    if (r == Read::Draining) continue;  // a message in flight finishes
    if (r != Read::Ok) {
      if (r == Read::TimedOut) queue_reply(replies::kTimeout);
      end_reason_ = r == Read::TimedOut ? "data_timeout" : "disconnect_in_data";
      co_return false;
    }
  }
  Envelope envelope{.session_id = id_, .queue_id = machine_.transaction_id(), .client_address = facts_.address,
                    .client_port = facts_.port, .client_host = facts_.host, .helo = machine_.helo(), .esmtp = machine_.esmtp(),
                    .tls_protocol = facts_.tls_protocol, .tls_cipher = facts_.tls_cipher,
                    .auth_user = machine_.auth_user(),
                    .sender = machine_.sender(), .recipients = machine_.recipients(),
                    .mail_parameters = machine_.mail_parameters(), .rcpt_parameters = machine_.rcpt_parameters()};
  Reply final_reply;
  bool final_reply_closes = false;
  // Who refused, for the refusal line: a script, a limit, the front's own
  // rules (default: RFC 5321 2.3.8 line ends, NUL), or delivery.
  std::string decided_by, decided_hook = "dot", limit;
  switch (decoder.fault()) {
    case smtp::DotDecoder::Fault::BareLineEnd:
      final_reply = replies::kBareLineEnd;
      decided_by = "default";
      break;
    case smtp::DotDecoder::Fault::NulByte:
      final_reply = replies::kNulInMessage;
      decided_by = "default";
      break;
    case smtp::DotDecoder::Fault::TooBig:
      final_reply = replies::kTooBig;
      decided_by = "limit";
      limit = "--max-message-size";
      break;
    case smtp::DotDecoder::Fault::LineTooLong:
      final_reply = replies::kLineTooLongInData;
      decided_by = "limit";
      limit = "max_line_length";
      break;
    case smtp::DotDecoder::Fault::None: {
      send_chunks(true);
      Decision d = Decision::proceed(0);
      bool close = false;
      if (machine_.listens(EventKind::EndOfMessage)) {
        d = co_await ask(machine_.end_of_message_event(message.size()));
      }
      const session::ChosenReply chosen = choose(d, Reply{});
      const Reply& policy_reply = chosen.reply;
      close = chosen.close;
      if (policy_reply.code >= 400) {
        final_reply = policy_reply;
        decided_by = d.script;
        if (!d.hook.empty()) decided_hook = d.hook;
      } else {
        final_reply = co_await deliver(envelope, message, d);
        decided_by = ctx_.smart_host.host.empty() ? "spool" : "smart_host";
        // smtpe: a 2xx from hook.dot is the final reply once the mail is safe.
        final_reply = session::message_reply(policy_reply, final_reply);
      }
      if (close) final_reply_closes = true;
      break;
    }
  }
  if (final_reply.code >= 400) log_refusal(nullptr, decided_hook, decided_by, final_reply, limit);
  log::info("queue_id={} session={} client={} helo={} from=<{}> to={} size={} reply=\"{}\"", log::escaped(envelope.queue_id),
            id_, client_token(), log::escaped(machine_.helo().empty() ? "-" : machine_.helo()),
            log::escaped(envelope.sender), log::recipient_list(envelope.recipients), decoder.size(),
            log::reply_text(final_reply));
  if (final_reply.code < 300) ++accepted_;
  queue_reply(final_reply);
  if (auto reset = machine_.end_transaction()) notify(std::move(*reset));
  co_return final_reply.code != 421 && !final_reply_closes;
}

asio::awaitable<Reply> Connection::deliver(Envelope& envelope, std::string& message, const Decision& eom) {
  // policyd's `message` module checks every change already; the front
  // checks again what crossed the wire (the one checker), and refuses to
  // deliver a message it cannot change as asked.
  for (const MessageChange& c : eom.changes) {
    if (const ChangeError err = check_change(c); err != ChangeError::None) {
      log::error("session={} queue_id={} policyd sent an invalid message change ({}); 451 sent", id_,
                 envelope.queue_id, change_error_text(err));
      co_return replies::kPolicyDownInSession;
    }
  }
  apply_changes(eom.changes, envelope, message);
  if (envelope.discard) {
    log::info("session={} queue_id={} discarded by policy", id_, envelope.queue_id);
    co_return Reply{250, "2.0.0", {"Ok: queued as " + envelope.queue_id}};
  }
  const std::string received = received_header(envelope, ctx_.config.hostname);
  if (!ctx_.smart_host.host.empty() && envelope.quarantine.empty()) {
    Reply relayed = co_await relay_message(ctx_.smart_host, envelope, received, message);
    if (relayed.code / 100 == 2) {
      ctx_.metrics.relayed.add();
      ctx_.metrics.relayed_bytes.add(received.size() + message.size());
    } else {
      ctx_.metrics.relay_failed(relayed.code);
    }
    co_return relayed;
  }
  // The spool's committer makes it durable with others (group commit).
  const std::string error = co_await ctx_.spool.async_write(envelope, received, message, asio::use_awaitable);
  if (!error.empty()) {
    log::error("session={} queue_id={} spool write failed: {}", id_, envelope.queue_id, error);
    ctx_.metrics.spool_failures.add();
    co_return replies::kSpoolFailed;
  }
  ctx_.metrics.spooled.add();
  ctx_.metrics.spooled_bytes.add(received.size() + message.size());
  co_return Reply{250, "2.0.0", {"Ok: queued as " + envelope.queue_id}};
}

}  // namespace mailhook::front::detail
