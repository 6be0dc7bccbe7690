// The session-changing commands of a Connection: STARTTLS (RFC 3207),
// AUTH PLAIN/LOGIN (RFC 4954, 4616) and XCLIENT (Postfix XCLIENT_README).
// Each collects what it needs from the client, asks policyd where a hook
// listens, and restarts the SessionMachine as its RFC says.
#include "frontend/server/session_connection.h"
#include "mailcore/telemetry/decision_log.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <chrono>
#include "frontend/delivery/envelope.h"
#include "frontend/replies.h"
#include "frontend/server/xclient.h"
#include "mailcore/session/session_machine.h"
#include "mailcore/smtp/ascii.h"
#include "mailcore/smtp/base64.h"
#include "mailcore/smtp/dot_decoder.h"
#include "mailcore/smtp/reply_text.h"
#include "mailcore/smtp/sasl.h"
#include "mailcore/telemetry/decision_log.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::front::detail {

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
  const Reply r = co_await authenticate_exchange(line, argument);
  // mailhook_front_auth_total{result}: from the reply that ends the exchange.
  using A = FrontMetrics::AuthOutcome;
  // Canceled: the client's "*" (RFC 4954 4) or the connection lost mid-way.
  const bool canceled = (r.code == 501 && r.enhanced == "5.7.0") || (r.code == 421 && r.enhanced == "4.4.2");
  ctx_.metrics.auth_exchange(r.code == 235 ? A::Success
                             : canceled    ? A::Canceled
                             : r.code == 501 ? A::Malformed
                                             : A::Failure);
  co_return r;
}

asio::awaitable<Reply> Connection::authenticate_exchange(const std::string& line, const std::string& argument) {
  static const Reply kCanceled{501, "5.7.0", {"Authentication canceled"}};
  static const Reply kBadBase64{501, "5.5.2", {"Cannot decode response"}};
  static const Reply kFailed{535, "5.7.8", {"Authentication credentials invalid"}};
  const std::size_t sp = argument.find(' ');
  const std::string mech = smtp::ascii_upper(argument.substr(0, sp));
  std::string initial = sp == std::string::npos ? std::string() : argument.substr(sp + 1);
  // Asks with a 334 challenge; the client's raw answer, or the reply that ends it.
  std::variant<std::string, Reply> answer;
  auto ask_client = [&](const std::string& challenge) -> asio::awaitable<std::variant<std::string, Reply>> {
    queue_reply(Reply{334, "", {challenge}});
    std::optional<std::string> got = co_await read_line();
    if (!got) co_return Reply{421, "4.4.2", {"Connection lost"}};
    if (*got == "*") co_return kCanceled;
    co_return *got;
  };
  // The decoding is mailcore/smtp/sasl (pure, fuzzed): a field with a NUL,
  // CR or LF never becomes a user name.
  std::string user, password;
  if (mech == "PLAIN") {
    if (initial.empty()) {
      answer = co_await ask_client("");
      if (auto* r = std::get_if<Reply>(&answer)) co_return *r;
      initial = std::get<std::string>(answer);
    }
    smtp::PlainCredentials creds = smtp::decode_plain(initial);
    if (creds.error != smtp::SaslError::None) co_return kBadBase64;
    user = std::move(creds.authcid);
    password = std::move(creds.password);
  } else {  // LOGIN
    if (initial.empty()) {
      answer = co_await ask_client("VXNlcm5hbWU6");  // "Username:"
      if (auto* r = std::get_if<Reply>(&answer)) co_return *r;
      initial = std::get<std::string>(answer);
    }
    smtp::LoginField u = smtp::decode_login_field(initial);
    if (u.error != smtp::SaslError::None) co_return kBadBase64;
    user = std::move(u.value);
    answer = co_await ask_client("UGFzc3dvcmQ6");  // "Password:"
    if (auto* r = std::get_if<Reply>(&answer)) co_return *r;
    smtp::LoginField p = smtp::decode_login_field(std::get<std::string>(answer));
    if (p.error != smtp::SaslError::None) co_return kBadBase64;
    password = std::move(p.value);
  }
  if (!machine_.listens(EventKind::Auth)) co_return kFailed;  // no hook.auth: nobody can log in
  Decision d = co_await ask(machine_.auth_event(line, argument, user, password));
  const Reply r = choose(d, kFailed).reply;
  if (r.code == 235) {
    machine_.authenticated(user);
    facts_.auth_user = user;
    log::info("session={} client={} authenticated user={}", id_, client_token(), log::escaped(user));
    co_return r;
  }
  log::notice("session={} client={} authentication failed user={}", id_, client_token(), log::escaped(user));
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
    const Reply r = choose(d, Reply{}).reply;
    if (r.code >= 400) co_return r;  // the hook refused: nothing changes
  } else {
    notify(std::move(e));  // policyd's client.* must follow anyway
  }
  log::info("session={} xclient from {} now client={} port={}", id_, address_, log::client_token(next.host, next.address),
            next.port);
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
  asio::error_code ec;
  socket_.non_blocking(true, ec);  // OpenSSL reads and writes the descriptor itself
  tls_ = std::make_unique<TlsStream>(socket_, ctx_.tls->native_handle());
  std::string why = tls_->error();
  timer_.expires_after(std::chrono::seconds(ctx_.config.command_timeout_s));
  while (tls_->ok() && why.empty()) {
    const TlsStream::Want w = tls_->handshake();
    if (w == TlsStream::Want::Done) break;
    if (w == TlsStream::Want::Failed) {
      why = tls_->error();
      break;
    }
    const Read ready = co_await wait_for_tls(w);
    if (ready == Read::TimedOut) why = "timed out";
    if (ready == Read::Draining) why = "shutting down";
    if (ready == Read::Closed) why = "the connection closed";
  }
  if (!why.empty()) {
    const bool timed_out = why == "timed out";
    ctx_.metrics.tls_handshake(timed_out ? FrontMetrics::TlsOutcome::Timeout : FrontMetrics::TlsOutcome::Failed);
    log::notice("session={} client={} TLS handshake failed: {}", id_, client_token(), why);
    tls_.reset();
    end_reason_ = "tls_failed";
    co_return false;
  }
  SSL* ssl = tls_->native_handle();
  ctx_.metrics.tls_handshake(FrontMetrics::TlsOutcome::Ok);
  facts_.tls_protocol = SSL_get_version(ssl);
  facts_.tls_cipher = SSL_get_cipher_name(ssl);
  machine_.restart_after_tls();
  // Always told, so client.* in policyd knows the TLS facts.
  SessionEvent e = machine_.notification(EventKind::Starttls);
  e.client = facts_;
  notify(std::move(e));
  log::info("session={} client={} TLS {} {}", id_, client_token(), facts_.tls_protocol, facts_.tls_cipher);
  co_return true;
}

}  // namespace mailhook::front::detail
