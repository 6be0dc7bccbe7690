// The SMTP connection coroutine: the command loop (line in, Step from the
// SessionMachine, policy decision or default through the shared reply
// rules, reply out) and the session's start and end. Socket I/O is
// connection_io.cc's, the DATA phase connection_message.cc's, the policy
// session's opening connection_policy.cc's. Never sees gRPC.
#include "frontend/server/session_connection.h"

#include <chrono>
#include "frontend/replies.h"
#include "frontend/server/xclient.h"
#include "mailcore/session/lookahead.h"
#include "mailcore/session/session_machine.h"
#include "mailcore/smtp/ascii.h"
#include "mailcore/smtp/base64.h"
#include "mailcore/smtp/reply_text.h"
#include "mailcore/telemetry/decision_log.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::front {
namespace detail {

asio::awaitable<bool> Connection::command_loop() {
  bool discarding = false;  // inside an over-long line
  for (;;) {
    if (write_failed_) co_return false;  // the client stopped reading: end_reason_ says why
    std::size_t eol = in_.find('\n');
    if (eol == std::string::npos && draining_ && machine_.transaction_id().empty()) {
      queue_reply(replies::kShuttingDown);  // idle at shutdown: RFC 5321 3.8
      end_reason_ = "shutdown";
      co_return false;
    }
    if (eol == std::string::npos) {
      if (in_.size() > smtp::kMaxCommandLine) {  // RFC 5321 4.5.3.1.4
        if (!discarding) queue_reply(replies::kLineTooLong);
        discarding = true;
        in_.clear();
      }
      co_await flush();  // RFC 2920: reply when the client's batch is read
      if (write_failed_) co_return false;  // end_reason_ says why
      const Read r = co_await read_more(std::chrono::seconds(ctx_.config.command_timeout_s));
      if (r == Read::Draining) continue;  // idle: 421 4.3.2 above; in a transaction: let it finish
      if (r == Read::TimedOut) {
        queue_reply(replies::kTimeout);
        end_reason_ = "timeout";
        co_return false;
      }
      if (r == Read::Closed) {
        end_reason_ = "disconnect";
        co_return false;
      }
      continue;
    }
    std::string_view line(in_.data(), eol);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (discarding || eol + 1 > smtp::kMaxCommandLine) {
      if (!discarding) queue_reply(replies::kLineTooLong);
      discarding = false;
      in_.erase(0, eol + 1);
      continue;
    }
    std::string command(line);
    in_.erase(0, eol + 1);
    const bool go_on = co_await on_command(std::move(command));
    if (!go_on) co_return false;
  }
}

// One command: its policy decision, reply and what it starts (AUTH,
// XCLIENT, STARTTLS, DATA). A coroutine of its own, so the frame holding
// the step, the decision and the replies exists only while a command is
// handled: an idle session keeps command_loop's small frame alone.
asio::awaitable<bool> Connection::on_command(std::string command) {
  const std::string candidate = next_transaction_id();
  session::Step step = machine_.on_command(command, candidate);
  if (step.starts_xclient) {
    const Reply r = co_await xclient(command, step.argument);
    queue_reply(r);
    co_return r.code != 421;
  }
  if (step.starts_auth) {
    const Reply r = co_await authenticate(command, step.argument);
    queue_reply(r);
    co_return r.code != 421;
  }
  std::string decided_by;  // the script whose reply this is (or policy_failure)
  std::string decided_hook;
  std::optional<Decision> d;
  if (step.event) {
    const EventKind kind = step.event->kind;
    // RFC 2920: the client's next commands are read already; their events
    // go in this one's frame when it goes out. No line is consumed here.
    const PolicyConversation::Predict ahead = [&](std::size_t room) {
      // A MAIL accepted here opens transaction n+1; a MAIL after it would be the next candidate.
      const std::string later_id =
          step.verb == smtp::Verb::Mail ? id_ + "T" + std::to_string(transactions_ + 2) : next_transaction_id();
      std::vector<SessionEvent> events = session::events_ahead(machine_, step, in_, room, later_id);
      if (!events.empty() && log::enabled(log::Level::Debug)) {
        log::debug("session={} sends {} events ahead{}", id_, events.size(),
                   events.size() == room ? " (--policy-pipeline-depth reached: later commands go in a later frame)" : "");
      }
      return events;
    };
    d = co_await policy_->ask(std::move(*step.event), ahead);
    step.event.reset();
    log_limits(*d);
    decided_by = d->script;
    decided_hook = d->hook.empty() ? session::hook_of(kind) : d->hook;
  }
  // The shared rules (mailcore/session/reply_rules.h), as --test applies them.
  const session::ChosenReply chosen = session::command_reply(machine_, step, d ? &*d : nullptr);
  log_invalid(chosen);
  const Reply& final_reply = chosen.reply;
  if (final_reply.code >= 400) {
    if (!step.limit.empty()) {
      log_refusal(&step, step.verb == smtp::Verb::Mail ? "mail" : "rcpt", "limit", final_reply, step.limit);
    } else if (chosen.by_policy && !decided_by.empty()) {
      log_refusal(&step, decided_hook, decided_by, final_reply);
    }
  }
  if (log::enabled(log::Level::Debug)) {
    log::debug("session={} command={} reply=\"{}\"", id_, log::escaped(command.substr(0, command.find(' '))),
               log::reply_text(final_reply));
  }
  queue_reply(final_reply);
  if (auto reset = machine_.commit(step, final_reply)) notify(std::move(*reset));
  if (machine_.transaction_id() == candidate && step.verb == smtp::Verb::Mail) ++transactions_;
  if (chosen.close) {
    if (step.verb != smtp::Verb::Quit) end_reason_ = "closed_by_policy";
    co_return false;
  }
  if (step.verb == smtp::Verb::Starttls && final_reply.code == 220) {
    const bool ok = co_await start_tls();
    co_return ok;
  }
  if (step.verb == smtp::Verb::Data && final_reply.code == 354) {
    co_await flush();
    const bool go_on = co_await data_phase();
    co_return go_on;
  }
  co_return true;
}

// client=host[addr] (docs/logging.md): the client XCLIENT named, else the peer.
std::string Connection::client_token() const {
  return log::client_token(facts_.host, facts_.address.empty() ? address_ : facts_.address);
}

void Connection::log_refusal(const session::Step* step, std::string_view hook, std::string_view script, const Reply& r,
                             std::string_view limit) {
  if (!log::enabled(log::Level::Notice)) return;
  const bool mail = step && step->verb == smtp::Verb::Mail;
  const bool rcpt = step && step->verb == smtp::Verb::Rcpt;
  // A refused MAIL never opened its transaction: name the id policyd saw.
  const std::string queue_id = mail ? next_transaction_id() : machine_.transaction_id();
  std::optional<std::string_view> from;
  if (mail) {
    from = step->address;
  } else if (!machine_.transaction_id().empty()) {
    from = machine_.sender();
  }
  const std::span<const std::string> to =
      rcpt ? std::span<const std::string>(&step->address, 1) : std::span<const std::string>(machine_.recipients());
  const log::DecisionFields f{
      .queue_id = queue_id,
      .session = id_,
      .client_host = facts_.host,
      .client_address = facts_.address.empty() ? std::string_view(address_) : std::string_view(facts_.address),
      .helo = machine_.helo(),
      .from = from,
      .to = to,
      .hook = hook,
      .script = script.empty() ? std::string_view("default") : script,
      .limit = limit,
  };
  log::notice("{}", log::decision_line("reject", f, r));
}

asio::awaitable<void> Connection::run() {
  asio::error_code ec;
  const auto remote = socket_.remote_endpoint(ec);
  address_ = remote.address().to_string();
  port_ = remote.port();
  const auto started = Clock::now();
  id_ = ctx_.session_ids.next();
  drain_id_ = ctx_.drain.add(socket_.get_executor(), [this] {
    draining_ = true;
    timer_.cancel();  // ends a --greet-pause wait
    asio::error_code ignored;
    if (waiting_read_) socket_.cancel(ignored);  // wakes an idle read (plain, TLS or a handshake's)
    // A reply the client does not read, outside a transaction: nothing to
    // finish, so the session ends now rather than at the end of the grace.
    if (waiting_write_ && machine_.transaction_id().empty()) socket_.cancel(ignored);
  });
  machine_.allow_xclient(ctx_.xclient_hosts.contains(address_));
  if (const auto admitted = ctx_.limiter.admit(address_); admitted != ConnectionLimiter::Admission::Admitted) {
    const bool total = admitted == ConnectionLimiter::Admission::TotalFull;
    ctx_.metrics.limit_refusal(total ? FrontMetrics::Limit::Total : FrontMetrics::Limit::PerIp);
    queue_reply(replies::kTooManyConnections);
    co_await flush();
    facts_.address = address_;
    log_refusal(nullptr, "accept", "limit", replies::kTooManyConnections,
                total ? "--max-connections" : "--max-connections-per-ip");
    co_return;
  }
  ctx_.metrics.sessions_total.add();
  ctx_.metrics.sessions_open.add(1);
  const bool opened = co_await open_policy();
  if (opened) co_await command_loop();
  co_await flush();
  if (machine_.listens(EventKind::Close)) notify(machine_.notification(EventKind::Close));
  if (policy_) policy_->close();
  if (tls_) {
    // A close_notify would wait on a possibly silent peer; just close.
    tls_.reset();
  }
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  ctx_.limiter.release(address_);
  ctx_.metrics.sessions_open.add(-1);
  log::info("session={} client={} port={} helo={} transactions={} accepted={} end={} duration_ms={}", id_,
            client_token(), port_, log::escaped(machine_.helo().empty() ? "-" : machine_.helo()),
            transactions_, accepted_, end_reason_,
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
}

}  // namespace detail

asio::awaitable<void> serve_connection(asio::ip::tcp::socket socket, FrontContext& context) {
  detail::Connection c(std::move(socket), context);
  co_await c.run();
}

}  // namespace mailhook::front
