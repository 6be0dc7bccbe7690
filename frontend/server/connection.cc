// The SMTP connection coroutine. Command phase: line in, Step from the
// SessionMachine, policy decision (or default), reply out. DATA phase:
// DotDecoder, chunks to policyd if it wants them, end-of-message decision,
// then delivery, and only then the final reply.
#include "frontend/server/connection.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <chrono>

#include "frontend/delivery/envelope.h"
#include "frontend/policy_client/policy_stream.h"
#include "frontend/server/replies.h"
#include "frontend/server/xclient.h"
#include "mailcore/session/session_machine.h"
#include "mailcore/smtp/ascii.h"
#include "mailcore/smtp/base64.h"
#include "mailcore/smtp/dot_decoder.h"
#include "mailcore/smtp/reply_text.h"
#include "mailcore/telemetry/log.h"
#include "mailcore/wire/convert.h"

namespace mailhook::front {

bool ConnectionLimiter::admit(const std::string& ip) {
  std::lock_guard l(mu_);
  int& n = per_ip_[ip];
  if (total_ >= total_limit_ || n >= per_ip_limit_) {
    if (n == 0) per_ip_.erase(ip);
    return false;
  }
  ++n;
  ++total_;
  return true;
}

void ConnectionLimiter::release(const std::string& ip) {
  std::lock_guard l(mu_);
  --total_;
  if (--per_ip_[ip] <= 0) per_ip_.erase(ip);
}

std::uint64_t DrainRegistry::add(asio::any_io_executor executor, std::function<void()> on_drain) {
  std::lock_guard l(mu_);
  const std::uint64_t id = ++next_;
  entries_.emplace(id, Entry{executor, std::move(on_drain)});
  if (draining_) post_drain(id, executor);
  return id;
}

void DrainRegistry::remove(std::uint64_t id) {
  std::lock_guard l(mu_);
  entries_.erase(id);
}

void DrainRegistry::start() {
  std::lock_guard l(mu_);
  draining_ = true;
  for (const auto& [id, e] : entries_) post_drain(id, e.executor);
}

std::size_t DrainRegistry::open() {
  std::lock_guard l(mu_);
  return entries_.size();
}

// Runs on the connection's own executor, where it is also destroyed, so a
// connection still registered there is alive for the whole call.
void DrainRegistry::post_drain(std::uint64_t id, const asio::any_io_executor& executor) {
  asio::post(executor, [this, id] {
    std::function<void()> fn;
    {
      std::lock_guard l(mu_);
      auto it = entries_.find(id);
      if (it == entries_.end()) return;
      fn = it->second.on_drain;
    }
    fn();
  });
}

namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr std::size_t kChunk = 64 * 1024;  // MessageChunk size to policyd

class Connection {
 public:
  Connection(tcp::socket socket, FrontContext& ctx)
      : socket_(std::move(socket)), ctx_(ctx), timer_(socket_.get_executor()),
        machine_(ctx.config.hostname, {ctx.config.max_message_size, ctx.config.max_recipients}, EventSet{}) {
    machine_.set_tls(ctx.tls != nullptr, false);
    machine_.allow_plaintext_auth(ctx.config.auth_plaintext);
  }

  ~Connection() {
    if (stream_) stream_->cancel();  // e.g. the front stops mid-session
    if (drain_id_ != 0) ctx_.drain.remove(drain_id_);
  }

  asio::awaitable<void> run();

 private:
  enum class Read : std::uint8_t { Ok, Closed, TimedOut, Draining };

  asio::awaitable<Read> read_more(std::chrono::seconds timeout);
  asio::awaitable<void> flush();
  void queue_reply(const Reply& r) { out_ += r.wire(); }
  asio::awaitable<bool> open_policy();
  asio::awaitable<Decision> ask(SessionEvent event);
  void notify(SessionEvent event);
  Reply choose(const SessionEvent* event, const Decision& d, const Reply& fallback, bool& close);
  asio::awaitable<bool> command_loop();
  asio::awaitable<bool> start_tls();
  asio::awaitable<std::optional<std::string>> read_line();
  asio::awaitable<Reply> authenticate(const std::string& line, const std::string& argument);
  asio::awaitable<Reply> xclient(const std::string& line, const std::string& argument);
  asio::awaitable<bool> data_phase();
  asio::awaitable<Reply> deliver(Envelope& envelope, std::string& message, const Decision& eom);
  // The id a MAIL command would start; counted once the MAIL is accepted.
  std::string next_transaction_id() const { return id_ + "T" + std::to_string(transactions_ + 1); }

  tcp::socket socket_;
  FrontContext& ctx_;
  asio::steady_timer timer_;
  session::SessionMachine machine_;
  std::shared_ptr<PolicyStream> stream_;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  ClientFacts facts_;
  bool policy_down_ = false;
  bool wants_message_ = false;
  std::string id_;
  std::string address_;
  std::uint32_t port_ = 0;
  std::string in_;
  std::string out_;
  std::uint64_t drain_id_ = 0;
  bool draining_ = false;
  int transactions_ = 0;
  int accepted_ = 0;
  std::string end_reason_ = "quit";
};

asio::awaitable<Connection::Read> Connection::read_more(std::chrono::seconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  constexpr auto token = asio::experimental::as_tuple(asio::use_awaitable);
  char buf[16 * 1024];
  timer_.expires_after(timeout);
  std::variant<std::tuple<asio::error_code, std::size_t>, std::tuple<asio::error_code>> result;
  if (tls_) {
    result = co_await (tls_->async_read_some(asio::buffer(buf), token) || timer_.async_wait(token));
  } else {
    result = co_await (socket_.async_read_some(asio::buffer(buf), token) || timer_.async_wait(token));
  }
  if (result.index() == 1) co_return draining_ ? Read::Draining : Read::TimedOut;
  const auto [ec, n] = std::get<0>(result);
  if (ec) co_return Read::Closed;
  in_.append(buf, n);
  co_return Read::Ok;
}

asio::awaitable<void> Connection::flush() {
  if (out_.empty()) co_return;
  asio::error_code ec;
  if (tls_) {
    co_await asio::async_write(*tls_, asio::buffer(out_), asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await asio::async_write(socket_, asio::buffer(out_), asio::redirect_error(asio::use_awaitable, ec));
  }
  out_.clear();
}

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
  start.early_talker = socket_.available(ec) > 0;  // talked before the greeting
  facts_.local_address = start.client.local_address;
  facts_.local_port = start.client.local_port;
  start.limits = {ctx_.config.max_message_size, ctx_.config.max_recipients, 512};
  v1::FrontMessage first;
  wire::to_proto(start, first.mutable_start());
  stream_ = std::make_shared<PolicyStream>(ctx_.policy, socket_.get_executor());
  stream_->start(std::move(first));
  auto m = co_await stream_->next(Clock::now() + std::chrono::milliseconds(ctx_.config.policy_timeout_ms));
  std::optional<Reply> greeting;
  if (m && m->has_opened()) {
    const Capabilities caps = wire::from_proto(m->opened().capabilities());
    machine_.set_listened(caps.events);
    wants_message_ = caps.wants_message;
    bool close = false;
    const Decision d = wire::from_proto(m->opened().decision());
    Reply r = choose(nullptr, d, Reply{220, "", {ctx_.config.hostname + " ESMTP mailhook"}}, close);
    queue_reply(r);
    if (r.code >= 400 || close) {
      log::info("session={} client={} refused at connect: {}", id_, address_, r.summary());
      end_reason_ = "refused";
      co_return false;
    }
    co_return true;
  }
  policy_down_ = true;
  stream_->close();
  log::warning("session={} client={} policy failure at connect (mode={})", id_, address_,
               ctx_.config.policy_failure == PolicyFailure::Tempfail ? "tempfail" : "accept");
  if (ctx_.config.policy_failure == PolicyFailure::Tempfail) {
    queue_reply(replies::kPolicyDownAtConnect);
    end_reason_ = "policy_down";
    co_return false;
  }
  queue_reply(Reply{220, "", {ctx_.config.hostname + " ESMTP mailhook"}});
  co_return true;
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
  if (!policy_down_) {
    notify(std::move(event));
    auto m = co_await stream_->next(Clock::now() + std::chrono::milliseconds(ctx_.config.policy_timeout_ms));
    if (m && m->has_decision() && m->decision().seq() == seq) co_return wire::from_proto(m->decision());
    policy_down_ = true;
    stream_->close();
    log::warning("session={} policy failure at seq {} ({}; mode={})", id_, seq, m ? "out of order" : "down or timeout",
                 ctx_.config.policy_failure == PolicyFailure::Tempfail ? "tempfail" : "accept");
  }
  if (ctx_.config.policy_failure == PolicyFailure::Tempfail) {
    co_return Decision::respond(seq, replies::kPolicyDownInSession);
  }
  co_return Decision::proceed(seq);
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
    const std::string command(line);
    in_.erase(0, eol + 1);
    const std::string candidate = next_transaction_id();
    session::Step step = machine_.on_command(command, candidate);
    Reply final_reply = step.default_reply;
    bool close = false;
    if (step.starts_xclient) {
      final_reply = co_await xclient(command, step.argument);
      queue_reply(final_reply);
      if (final_reply.code == 421) co_return false;
      continue;
    }
    if (step.starts_auth) {
      final_reply = co_await authenticate(command, step.argument);
      queue_reply(final_reply);
      if (final_reply.code == 421) co_return false;
      continue;
    }
    if (step.event) {
      const SessionEvent event_copy_kind{.kind = step.event->kind};
      Decision d = co_await ask(std::move(*step.event));
      step.event.reset();
      final_reply = choose(&event_copy_kind, d, step.default_reply, close);
    }
    if (!step.policy_may_decide) final_reply = step.default_reply;
    queue_reply(final_reply);
    if (auto reset = machine_.commit(step, final_reply)) notify(std::move(*reset));
    if (machine_.transaction_id() == candidate && step.verb == smtp::Verb::Mail) ++transactions_;
    if (step.verb == smtp::Verb::Quit || close || final_reply.code == 421) {
      if (step.verb != smtp::Verb::Quit) end_reason_ = "closed_by_policy";
      co_return false;
    }
    if (step.verb == smtp::Verb::Starttls && final_reply.code == 220) {
      const bool ok = co_await start_tls();
      if (!ok) co_return false;
      continue;
    }
    if (step.verb == smtp::Verb::Data && final_reply.code == 354) {
      co_await flush();
      const bool go_on = co_await data_phase();
      if (!go_on) co_return false;
    }
  }
}

// One line of an AUTH exchange (RFC 4954 4); nullopt when the client left.
asio::awaitable<std::optional<std::string>> Connection::read_line() {
  for (;;) {
    const std::size_t eol = in_.find('\n');
    if (eol != std::string::npos) {
      std::string line = in_.substr(0, eol);
      in_.erase(0, eol + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      co_return line;
    }
    if (in_.size() > 12288) co_return std::nullopt;  // RFC 4954 4: 12288 octets
    co_await flush();
    const Read r = co_await read_more(std::chrono::seconds(ctx_.config.command_timeout_s));
    if (r == Read::Draining) continue;
    if (r != Read::Ok) co_return std::nullopt;
  }
}

// AUTH PLAIN and LOGIN (RFC 4954, 4616): collect and decode the
// credentials, then hook.auth decides; only 235 authenticates.
asio::awaitable<Reply> Connection::authenticate(const std::string& line, const std::string& argument) {
  static const Reply kCanceled{501, "5.7.0", {"Authentication canceled"}};
  static const Reply kBadBase64{501, "5.5.2", {"Cannot decode response"}};
  static const Reply kFailed{535, "5.7.8", {"Authentication credentials invalid"}};
  const std::size_t sp = argument.find(' ');
  const std::string mech = smtp::ascii_upper(argument.substr(0, sp));
  std::string initial = sp == std::string::npos ? std::string() : argument.substr(sp + 1);
  // Asks with a 334 challenge; the decoded answer, or the reply that ends it.
  std::variant<std::string, Reply> answer;
  auto ask_client = [&](const std::string& challenge) -> asio::awaitable<std::variant<std::string, Reply>> {
    queue_reply(Reply{334, "", {challenge}});
    std::optional<std::string> got = co_await read_line();
    if (!got) co_return Reply{421, "4.4.2", {"Connection lost"}};
    if (*got == "*") co_return kCanceled;
    std::optional<std::string> decoded = smtp::base64_decode(*got);
    if (!decoded) co_return kBadBase64;
    co_return *decoded;
  };
  std::string user, password;
  if (mech == "PLAIN") {
    std::optional<std::string> decoded;
    if (initial.empty()) {
      answer = co_await ask_client("");
      if (auto* r = std::get_if<Reply>(&answer)) co_return *r;
      decoded = std::get<std::string>(answer);
    } else if (initial == "=") {
      decoded = std::string();
    } else {
      decoded = smtp::base64_decode(initial);
      if (!decoded) co_return kBadBase64;
    }
    // RFC 4616 2: [authzid] NUL authcid NUL passwd
    const std::size_t a = decoded->find('\0');
    const std::size_t b = a == std::string::npos ? a : decoded->find('\0', a + 1);
    if (b == std::string::npos) co_return kBadBase64;
    user = decoded->substr(a + 1, b - a - 1);
    password = decoded->substr(b + 1);
  } else {  // LOGIN
    if (!initial.empty()) {
      std::optional<std::string> u = smtp::base64_decode(initial);
      if (!u) co_return kBadBase64;
      user = *u;
    } else {
      answer = co_await ask_client("VXNlcm5hbWU6");  // "Username:"
      if (auto* r = std::get_if<Reply>(&answer)) co_return *r;
      user = std::get<std::string>(answer);
    }
    answer = co_await ask_client("UGFzc3dvcmQ6");  // "Password:"
    if (auto* r = std::get_if<Reply>(&answer)) co_return *r;
    password = std::get<std::string>(answer);
  }
  if (!machine_.listens(EventKind::Auth)) co_return kFailed;  // no hook.auth: nobody can log in
  Decision d = co_await ask(machine_.auth_event(line, argument, user, password));
  bool close = false;
  const SessionEvent auth_kind{.kind = EventKind::Auth};
  const Reply r = choose(&auth_kind, d, kFailed, close);
  if (r.code == 235) {
    machine_.authenticated(user);
    facts_.auth_user = user;
    log::info("session={} client={} authenticated user={}", id_, address_, user);
    co_return r;
  }
  log::notice("session={} client={} authentication failed user={}", id_, address_, user);
  if (r.code >= 400) co_return r;  // the hook's refusal, e.g. 454 4.7.0
  co_return kFailed;
}

// XCLIENT: the attributes become the client facts (and hook.xclient may
// refuse them); the session then starts over with a new greeting.
asio::awaitable<Reply> Connection::xclient(const std::string& line, const std::string& argument) {
  ClientFacts next = facts_;
  std::string helo = machine_.helo();
  bool esmtp = machine_.esmtp();
  const std::string error = apply_xclient(argument, next, helo, esmtp);
  if (!error.empty()) co_return Reply{501, "5.5.4", {"XCLIENT: " + error}};
  SessionEvent e = machine_.notification(EventKind::Xclient);
  e.input = line;
  e.argument = argument;
  e.client = next;
  if (machine_.listens(EventKind::Xclient)) {
    e.wants_reply = true;
    Decision d = co_await ask(std::move(e));
    bool close = false;
    const SessionEvent kind{.kind = EventKind::Xclient};
    const Reply r = choose(&kind, d, Reply{}, close);
    if (r.code >= 400) co_return r;  // the hook refused: nothing changes
  } else {
    notify(std::move(e));  // policyd's client.* must follow anyway
  }
  log::info("session={} xclient from {} now client={}:{} name={}", id_, address_, next.address, next.port,
            next.host.empty() ? "-" : next.host);
  facts_ = std::move(next);
  machine_.restart_after_xclient(helo, esmtp, facts_.auth_user);
  co_return Reply{220, "", {ctx_.config.hostname + " ESMTP mailhook"}};
}

// RFC 3207: the handshake after "220 Ready". Anything the client sent
// behind STARTTLS in the clear is dropped, never executed (CVE-2011-0411),
// and the session starts over: EHLO is required again.
asio::awaitable<bool> Connection::start_tls() {
  co_await flush();
  in_.clear();
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *ctx_.tls);
  using namespace asio::experimental::awaitable_operators;
  constexpr auto token = asio::experimental::as_tuple(asio::use_awaitable);
  timer_.expires_after(std::chrono::seconds(ctx_.config.command_timeout_s));
  auto result = co_await (tls_->async_handshake(asio::ssl::stream_base::server, token) || timer_.async_wait(token));
  const asio::error_code ec = result.index() == 0 ? std::get<0>(std::get<0>(result)) : asio::error::timed_out;
  if (ec) {
    log::notice("session={} client={} TLS handshake failed: {}", id_, address_, ec.message());
    tls_.reset();
    end_reason_ = "tls_failed";
    co_return false;
  }
  SSL* ssl = tls_->native_handle();
  facts_.tls_protocol = SSL_get_version(ssl);
  facts_.tls_cipher = SSL_get_cipher_name(ssl);
  machine_.restart_after_tls();
  // Always told, so client.* in policyd knows the TLS facts.
  SessionEvent e = machine_.notification(EventKind::Starttls);
  e.client = facts_;
  notify(std::move(e));
  log::info("session={} client={} TLS {} {}", id_, address_, facts_.tls_protocol, facts_.tls_cipher);
  co_return true;
}

asio::awaitable<bool> Connection::data_phase() {
  smtp::DotDecoder decoder(ctx_.config.max_message_size);
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
  switch (decoder.fault()) {
    case smtp::DotDecoder::Fault::BareLineEnd: final_reply = replies::kBareLineEnd; break;
    case smtp::DotDecoder::Fault::NulByte: final_reply = replies::kNulInMessage; break;
    case smtp::DotDecoder::Fault::TooBig: final_reply = replies::kTooBig; break;
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
      } else {
        final_reply = co_await deliver(envelope, message, d);
        // smtpe: a 2xx from hook.dot is the final reply once the mail is safe.
        if (final_reply.code < 300 && policy_reply.code != 0) final_reply = policy_reply;
      }
      if (close) final_reply_closes = true;
      break;
    }
  }
  log::info("session={} queue_id={} from=<{}> to=<{}> size={} reply=\"{}\"", id_, envelope.queue_id,
            envelope.sender, fmt::join(envelope.recipients, ">,<"), decoder.size(), final_reply.summary());
  if (final_reply.code < 300) ++accepted_;
  queue_reply(final_reply);
  if (auto reset = machine_.end_transaction()) notify(std::move(*reset));
  co_return final_reply.code != 421 && !final_reply_closes;
}

asio::awaitable<Reply> Connection::deliver(Envelope& envelope, std::string& message, const Decision& eom) {
  apply_changes(eom.changes, envelope, message);
  if (envelope.discard) {
    log::info("session={} queue_id={} discarded by policy", id_, envelope.queue_id);
    co_return Reply{250, "2.0.0", {"Ok: queued as " + envelope.queue_id}};
  }
  const std::string received = received_header(envelope, ctx_.config.hostname);
  if (!ctx_.smart_host.host.empty() && envelope.quarantine.empty()) {
    Reply relayed = co_await relay_message(ctx_.smart_host, envelope, received, message);
    co_return relayed;
  }
  // fsync takes milliseconds: do it on the disk pool, then come back.
  auto home = co_await asio::this_coro::executor;
  co_await asio::post(ctx_.disk, asio::use_awaitable);
  const std::string error = ctx_.spool.write(envelope, received, message);
  co_await asio::post(home, asio::use_awaitable);
  if (!error.empty()) {
    log::error("session={} queue_id={} spool write failed: {}", id_, envelope.queue_id, error);
    co_return replies::kSpoolFailed;
  }
  co_return Reply{250, "2.0.0", {"Ok: queued as " + envelope.queue_id}};
}

asio::awaitable<void> Connection::run() {
  asio::error_code ec;
  const auto remote = socket_.remote_endpoint(ec);
  address_ = remote.address().to_string();
  port_ = remote.port();
  const auto started = Clock::now();
  const std::uint64_t n = ctx_.sequence.fetch_add(1);
  id_ = fmt::format("{:08X}{:04X}", static_cast<std::uint32_t>(std::time(nullptr)), static_cast<std::uint32_t>(n & 0xffff));
  drain_id_ = ctx_.drain.add(socket_.get_executor(), [this] {
    draining_ = true;
    timer_.cancel();  // wakes an idle read
  });
  machine_.allow_xclient(ctx_.xclient_hosts.contains(address_));
  if (!ctx_.limiter.admit(address_)) {
    queue_reply(replies::kTooManyConnections);
    co_await flush();
    log::notice("session={} client={} refused: too many connections", id_, address_);
    co_return;
  }
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
  log::info("session={} client={}:{} helo={} transactions={} accepted={} end={} duration_ms={}", id_, address_, port_,
            machine_.helo().empty() ? "-" : machine_.helo(), transactions_, accepted_, end_reason_,
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
}

}  // namespace

asio::awaitable<void> serve_connection(tcp::socket socket, FrontContext& context) {
  Connection c(std::move(socket), context);
  co_await c.run();
}

}  // namespace mailhook::front
