// The SMTP connection coroutine. Command phase: line in, Step from the
// SessionMachine, policy decision (or default), reply out. DATA phase:
// DotDecoder, chunks to policyd if it wants them, end-of-message decision,
// then delivery, and only then the final reply.
#include "frontend/server/session_connection.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <chrono>
#include "frontend/delivery/envelope.h"
#include "frontend/policy_client/policy_stream.h"
#include "frontend/server/replies.h"
#include "frontend/server/xclient.h"
#include "mailcore/event/change_check.h"
#include "mailcore/session/session_machine.h"
#include "mailcore/smtp/ascii.h"
#include "mailcore/smtp/base64.h"
#include "mailcore/smtp/dot_decoder.h"
#include "mailcore/smtp/reply_text.h"
#include "mailcore/telemetry/decision_log.h"
#include "mailcore/telemetry/log.h"
#include "mailcore/wire/convert.h"

namespace mailhook::front {
namespace detail {

// The bytes of one read land in a buffer of the thread, not of the
// session: an idle session holds no read buffer while it waits (10,000
// idle sessions would otherwise hold 160 MB). Each read waits for the
// socket first, then reads what is there without blocking; with TLS,
// OpenSSL decrypts straight into that buffer.
asio::awaitable<Connection::Read> Connection::read_more(std::chrono::seconds timeout) {
  thread_local char buf[16 * 1024];
  timer_.expires_after(timeout);
  if (tls_) {
    for (;;) {
      std::size_t n = 0;
      const TlsStream::Want w = tls_->read(buf, sizeof buf, n);
      if (w == TlsStream::Want::Done) {
        in_.append(buf, n);
        co_return Read::Ok;
      }
      if (w == TlsStream::Want::Failed) co_return Read::Closed;
      const Read ready = co_await wait_for_tls(w);
      if (ready != Read::Ok) co_return ready;
    }
  }
  for (;;) {
    const Read ready = co_await wait_socket(tcp::socket::wait_read);
    if (ready != Read::Ok) co_return ready;
    asio::error_code ec;
    socket_.non_blocking(true, ec);
    const std::size_t n = socket_.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) continue;  // spurious wake-up
    if (ec) co_return Read::Closed;
    in_.append(buf, n);
    co_return Read::Ok;
  }
}

// The wait for the socket to be readable (or writable), ended early by
// the timer the caller armed (a timeout) or by the drain. Not asio's ||
// operator: that spawns two coroutines and a parallel group per wait,
// about 2.4 KiB that every idle session would hold. The timer's handler
// touches the connection only while it lives and only for the wait it was
// armed for.
asio::awaitable<Connection::Read> Connection::wait_socket(tcp::socket::wait_type what) {
  const std::uint64_t gen = ++wait_generation_;
  timer_ended_wait_ = false;
  timer_.async_wait([this, gen, alive = std::weak_ptr<void>(alive_)](const asio::error_code& ec) {
    if (ec || alive.expired() || gen != wait_generation_) return;
    timer_ended_wait_ = true;
    asio::error_code ignored;
    socket_.cancel(ignored);
  });
  waiting_read_ = what == tcp::socket::wait_read;  // the drain wakes a read, and an idle session's write
  waiting_write_ = !waiting_read_;
  asio::error_code ec;
  co_await socket_.async_wait(what, asio::redirect_error(asio::use_awaitable, ec));
  waiting_read_ = false;
  waiting_write_ = false;
  if (draining_ && ec == asio::error::operation_aborted) co_return Read::Draining;
  if (timer_ended_wait_ && ec == asio::error::operation_aborted) co_return Read::TimedOut;
  timer_.cancel();
  co_return ec ? Read::Closed : Read::Ok;
}

// Writes out_. A reply that makes no progress for --command-timeout ends
// the session, as Postfix's smtpd_timeout covers both directions: a client
// that pipelines and never reads would otherwise hold its slot for good.
// The drain ends a stalled write outside a transaction at once.
asio::awaitable<void> Connection::flush() {
  if (out_.empty()) co_return;
  if (write_failed_) {
    out_.clear();
    co_return;
  }
  const auto timeout = std::chrono::seconds(ctx_.config.command_timeout_s);
  std::size_t done = 0;
  std::size_t armed_at = std::string::npos;  // progress when the timer was last armed
  Read stalled = Read::Ok;
  // Arms the no-progress timer again only after progress.
  auto arm = [&] {
    if (armed_at == done) return;
    armed_at = done;
    timer_.expires_after(timeout);
  };
  asio::error_code ec;
  if (!tls_) socket_.non_blocking(true, ec);
  while (done < out_.size()) {
    std::size_t n = 0;
    tcp::socket::wait_type want = tcp::socket::wait_write;
    if (tls_) {
      const TlsStream::Want w = tls_->write(out_.data() + done, out_.size() - done, n);
      done += n;
      if (w == TlsStream::Want::Done) continue;
      if (w == TlsStream::Want::Failed) {
        stalled = Read::Closed;
        break;
      }
      if (w == TlsStream::Want::Read) want = tcp::socket::wait_read;
    } else {
      n = socket_.write_some(asio::buffer(out_.data() + done, out_.size() - done), ec);
      done += n;
      if (!ec) continue;
      if (ec != asio::error::would_block && ec != asio::error::try_again) {
        stalled = Read::Closed;
        break;
      }
    }
    if (draining_ && machine_.transaction_id().empty()) {  // shutting down, nothing in flight
      stalled = Read::Draining;
      break;
    }
    arm();
    stalled = co_await wait_socket(want);
    if (stalled != Read::Ok) break;
  }
  if (done < out_.size()) {
    write_failed_ = true;
    if (stalled == Read::TimedOut) {
      end_reason_ = "write_timeout";
      log::notice("session={} client={} reply not read for {}s (--command-timeout): closing", id_, client_token(),
                  ctx_.config.command_timeout_s);
    } else if (stalled == Read::Draining) {
      end_reason_ = "shutdown";
    } else {
      end_reason_ = "disconnect";
    }
    asio::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
  }
  out_.clear();
}

// The hook an event runs in policyd, for the refusal line.
std::string hook_of(EventKind kind) {
  return kind == EventKind::EndOfMessage ? std::string("dot") : std::string(event_kind_name(kind));
}

// Streams tried per session before policyd counts as down at connect.
constexpr int kOpenAttempts = 3;

asio::awaitable<bool> Connection::open_policy() {
  SessionStart start;
  start.session_id = id_;
  start.local_host = ctx_.config.hostname;
  start.client.address = address_;
  start.client.port = port_;
  facts_ = start.client;
  asio::error_code ec;
  const auto local = socket_.local_endpoint(ec);
  start.client.local_address = local.address().to_string();
  start.client.local_port = local.port();
  if (ctx_.config.greet_pause_ms > 0) {
    // RFC 5321 4.3.1: a client must wait for the greeting. Watch for one
    // that does not, for --greet-pause, without reading its bytes.
    using namespace asio::experimental::awaitable_operators;
    constexpr auto token = asio::experimental::as_tuple(asio::use_awaitable);
    timer_.expires_after(std::chrono::milliseconds(ctx_.config.greet_pause_ms));
    co_await (socket_.async_wait(tcp::socket::wait_read, token) || timer_.async_wait(token));
  }
  start.early_talker = socket_.available(ec) > 0;  // talked before the greeting (client.is_pipelining)
  facts_.local_address = start.client.local_address;
  facts_.local_port = start.client.local_port;
  start.limits = {ctx_.config.max_message_size, ctx_.config.max_recipients, 0};
  v1::FrontMessage first;
  wire::to_proto(start, first.mutable_start());
  const auto deadline = Clock::now() + std::chrono::milliseconds(ctx_.config.policy_timeout_ms);
  std::optional<v1::PolicyMessage> m;
  // A stream that breaks before policyd opened the session (a replica that
  // just died, not yet marked down by the balancer) is tried again on the
  // next replica: nothing was said to the client yet. A slow policyd is not
  // retried: the deadline covers every attempt.
  for (int attempt = 0; attempt < kOpenAttempts && !m; ++attempt) {
    if (stream_) stream_->cancel();
    stream_ = std::make_shared<PolicyStream>(ctx_.policy, socket_.get_executor());
    stream_->start(first);
    auto got = co_await stream_->next(deadline);
    m = std::move(got);
    if (!m && !stream_->broken()) break;  // the deadline passed
    if (m && !m->has_opened()) break;
  }
  std::optional<Reply> greeting;
  if (m && m->has_opened()) {
    const Capabilities caps = wire::from_proto(m->opened().capabilities());
    machine_.set_listened(caps.events);
    wants_message_ = caps.wants_message;
    bool close = false;
    const Decision d = wire::from_proto(m->opened().decision());
    apply_limits(d);
    Reply r = choose(nullptr, d, Reply{220, "", {ctx_.config.hostname + " ESMTP mailhook"}}, close);
    queue_reply(r);
    if (r.code >= 400 || close) {
      if (r.code >= 400) log_refusal(nullptr, "accept", d.script, r);
      end_reason_ = "refused";
      co_return false;
    }
    co_return true;
  }
  policy_down_ = true;
  stream_->close();
  ctx_.metrics.policy_failures.add();
  const std::string reason = co_await policy_failure_reason();
  log::warning("session={} client={} policy failure at connect (mode={}): {}", id_, client_token(),
               ctx_.config.policy_failure == PolicyFailure::Tempfail ? "tempfail" : "accept", reason);
  if (ctx_.config.policy_failure == PolicyFailure::Tempfail) {
    queue_reply(replies::kPolicyDownAtConnect);
    log_refusal(nullptr, "accept", "policy_failure", replies::kPolicyDownAtConnect);
    end_reason_ = "policy_down";
    co_return false;
  }
  queue_reply(Reply{220, "", {ctx_.config.hostname + " ESMTP mailhook"}});
  co_return true;
}

// "policy daemon HOST:PORT unreachable: connection refused", or no answer
// within --policy-timeout: what an administrator checks first.
asio::awaitable<std::string> Connection::policy_failure_reason() {
  const std::string target = "policy daemon " + log::escape_text(ctx_.config.policyd);
  // A refused connection fails the read a moment before gRPC's status
  // arrives: wait for it briefly, so the line says why.
  std::string why;  // no co_await inside ?: (GCC 12 destroys its temporaries twice there)
  if (stream_) why = co_await stream_->settled_failure(Clock::now() + std::chrono::seconds(1));
  if (!why.empty()) {
    co_return target + " " + (why.rfind("unreachable", 0) == 0 ? "" : "failed: ") + log::escape_text(why);
  }
  co_return target + " gave no answer within --policy-timeout " + std::to_string(ctx_.config.policy_timeout_ms) +
      "ms";
}

void Connection::notify(SessionEvent event) {
  if (policy_down_ || !stream_) return;
  v1::FrontMessage m;
  wire::to_proto(std::move(event), m.mutable_event());
  stream_->send(std::move(m));
}

// Sends one event that wants a reply and awaits its decision. A broken or
// slow policyd is a policy failure: the mode of --policy-failure decides.
asio::awaitable<Decision> Connection::ask(SessionEvent event) {
  const std::uint64_t seq = event.seq;
  const std::string hook = hook_of(event.kind);
  if (!policy_down_) {
    const auto sent = Clock::now();
    notify(std::move(event));
    auto m = co_await stream_->next(sent + std::chrono::milliseconds(ctx_.config.policy_timeout_ms));
    if (m && m->has_decision() && m->decision().seq() == seq) {
      ctx_.metrics.policy_seconds.observe(std::chrono::duration<double>(Clock::now() - sent).count());
      co_return wire::from_proto(m->decision());
    }
    policy_down_ = true;
    ctx_.metrics.policy_failures.add();
    stream_->close();
    // No co_await inside ?: (GCC 12 destroys its temporaries twice there).
    std::string reason;
    if (m) {
      reason = "policy daemon " + log::escape_text(ctx_.config.policyd) + " answered out of order";
    } else {
      reason = co_await policy_failure_reason();
    }
    log::warning("session={} policy failure at seq {} ({}; mode={}): {}", id_, seq, m ? "out of order" : "down or timeout",
                 ctx_.config.policy_failure == PolicyFailure::Tempfail ? "tempfail" : "accept", reason);
  }
  if (ctx_.config.policy_failure == PolicyFailure::Tempfail) {
    Decision d = Decision::respond(seq, replies::kPolicyDownInSession);
    d.script = "policy_failure";  // for the refusal line
    d.hook = hook;
    co_return d;
  }
  co_return Decision::proceed(seq);
}

// New limits from the policy (mailhook.limits): true when there were some.
bool Connection::apply_limits(const Decision& d) {
  if (!d.limits) return false;
  machine_.set_limits({d.limits->max_message_size, d.limits->max_recipients, d.limits->max_line_length});
  log::info("session={} limits from policy: max_message_size={} max_recipients={} max_line_length={}", id_,
            d.limits->max_message_size, d.limits->max_recipients, d.limits->max_line_length);
  return true;
}

// The reply to send: the policy's if it is valid for this command, else
// the default. 421 or disconnect closes.
Reply Connection::choose(const SessionEvent* event, const Decision& d, const Reply& fallback, bool& close) {
  close = d.disconnect;
  if (d.action != Decision::Action::Reply) return fallback;
  const smtp::ReplyError e = smtp::validate(d.reply);
  // 354 only answers DATA, and DATA only 354 or a refusal (RFC 5321 4.3.2).
  const bool is_data = event && event->kind == EventKind::Data;
  const bool fits = is_data ? (d.reply.code == 354 || d.reply.code >= 400) : d.reply.code / 100 != 3;
  if (e != smtp::ReplyError::None || !fits) {
    log::warning("session={} invalid reply from policyd ({}); default sent", id_,
                 e != smtp::ReplyError::None ? smtp::reply_error_text(e) : "wrong class for the command");
    close = false;
    return fallback;
  }
  if (d.reply.code == 421) close = true;
  return d.reply;
}

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
  Reply final_reply = step.default_reply;
  bool close = false;
  if (step.starts_xclient) {
    final_reply = co_await xclient(command, step.argument);
    queue_reply(final_reply);
    co_return final_reply.code != 421;
  }
  if (step.starts_auth) {
    final_reply = co_await authenticate(command, step.argument);
    queue_reply(final_reply);
    co_return final_reply.code != 421;
  }
  std::string decided_by;  // the script whose reply this is (or policy_failure)
  std::string decided_hook;
  if (step.event) {
    const SessionEvent event_copy_kind{.kind = step.event->kind};
    Decision d = co_await ask(std::move(*step.event));
    step.event.reset();
    if (apply_limits(d) && step.verb == smtp::Verb::Ehlo) step.default_reply = machine_.ehlo_reply(step.argument);
    // VPOP3 GetEHLOCapabilities: the policy's keywords replace ours.
    if (step.verb == smtp::Verb::Ehlo && !d.ehlo_keywords.empty() && step.default_reply.code == 250) {
      step.default_reply.lines.resize(1);
      step.default_reply.lines.insert(step.default_reply.lines.end(), d.ehlo_keywords.begin(), d.ehlo_keywords.end());
    }
    final_reply = choose(&event_copy_kind, d, step.default_reply, close);
    if (d.action == Decision::Action::Reply && final_reply == d.reply) {
      decided_by = d.script;
      decided_hook = d.hook.empty() ? hook_of(event_copy_kind.kind) : d.hook;
    }
  }
  if (!step.policy_may_decide) final_reply = step.default_reply;
  if (final_reply.code >= 400) {
    if (!step.limit.empty()) {
      log_refusal(&step, step.verb == smtp::Verb::Mail ? "mail" : "rcpt", "limit", final_reply, step.limit);
    } else if (!decided_by.empty() && step.policy_may_decide) {
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
  if (step.verb == smtp::Verb::Quit || close || final_reply.code == 421) {
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

// One line of an AUTH exchange (RFC 4954 4); nullopt when the client left.

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
      const Reply policy_reply = choose(nullptr, d, Reply{}, close);
      if (policy_reply.code >= 400) {
        final_reply = policy_reply;
        decided_by = d.script;
        if (!d.hook.empty()) decided_hook = d.hook;
      } else {
        final_reply = co_await deliver(envelope, message, d);
        decided_by = ctx_.smart_host.host.empty() ? "spool" : "smart_host";
        // smtpe: a 2xx from hook.dot is the final reply once the mail is safe.
        if (final_reply.code < 300 && policy_reply.code != 0) final_reply = policy_reply;
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
  if (stream_) stream_->close();
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
