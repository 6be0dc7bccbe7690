// The SMTP client side of the relay. Connections to the smart host are
// kept per front thread and reused: a delivered transaction ends with the
// final dot's reply; a refused one (a recipient, DATA) is ended with RSET
// before the connection goes back, or the connection is dropped, so the
// next message never meets "503 5.5.1 nested MAIL command". MAIL, every
// RCPT and DATA go in one write when the smart host offers PIPELINING
// (RFC 2920): two round trips per message instead of seven. A kept
// connection the smart host closed (its idle timeout) is noticed before
// reuse; one that turns out dead before anything was accepted is replaced
// by a fresh one, once.
#include "frontend/delivery/smart_host.h"

#include <sys/socket.h>

#include <cerrno>

#include "mailcore/smtp/ascii.h"
#include "mailcore/smtp/reply_text.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::front {
namespace {

using asio::ip::tcp;

const Reply kRelayFailed{451, "4.4.1", {"Smart host unavailable, try again later"}};

// RFC 5321 4.5.2: a line starting with "." gets one more.
std::string dot_stuff(const std::string& received, const std::string& message) {
  std::string out;
  out.reserve(received.size() + message.size() + 64);
  auto add = [&](const std::string& s) {
    bool line_start = out.empty() || out.ends_with("\r\n");
    for (char c : s) {
      if (line_start && c == '.') out += '.';
      out += c;
      line_start = c == '\n';
    }
  };
  add(received);
  add(message);
  if (!out.ends_with("\r\n")) out += "\r\n";
  out += ".\r\n";
  return out;
}

class SmtpClient {
 public:
  SmtpClient(asio::any_io_executor ex, std::chrono::seconds timeout)
      : socket_(std::make_shared<tcp::socket>(ex)), watchdog_(ex), timeout_(timeout) {}

  asio::awaitable<bool> connect(const std::string& host, const std::string& port) {
    tcp::resolver resolver(socket_->get_executor());
    arm();
    asio::error_code ec;
    auto endpoints = co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    co_await asio::async_connect(*socket_, endpoints, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  // Reads one complete (multi-line) reply; nullopt on I/O error or garbage.
  asio::awaitable<std::optional<Reply>> read_reply() {
    arm();
    std::string text;
    for (;;) {
      asio::error_code ec;
      const std::size_t n =
          co_await asio::async_read_until(*socket_, asio::dynamic_buffer(buffer_), "\r\n",
                                          asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return std::nullopt;
      const std::string line = buffer_.substr(0, n);
      buffer_.erase(0, n);
      text += line;
      if (line.size() < 4 || line[3] != '-') break;
      if (text.size() > 64 * 1024) co_return std::nullopt;
    }
    smtp::ParsedReply parsed = smtp::parse_reply(text);
    std::optional<Reply> reply = std::move(parsed.reply);
    co_return reply;
  }

  asio::awaitable<bool> send(const std::string& data) {
    arm();
    asio::error_code ec;
    co_await asio::async_write(*socket_, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  // GCC 12: keep each co_await a statement of its own (co_await inside a
  // condition or an argument list miscompiles).
  asio::awaitable<std::optional<Reply>> command(const std::string& line) {
    const bool sent = co_await send(line + "\r\n");
    std::optional<Reply> reply;
    if (sent) reply = co_await read_reply();
    co_return reply;
  }

  ~SmtpClient() {
    watchdog_.cancel();
    asio::error_code ec;
    socket_->close(ec);
  }

  // Between messages, in the pool: no watchdog runs.
  void idle() {
    watchdog_.cancel();
    idle_since_ = std::chrono::steady_clock::now();
  }
  std::chrono::steady_clock::time_point idle_since() const { return idle_since_; }
  bool open() const { return socket_->is_open(); }
  // A kept connection is fit for the next message only if the smart host
  // has said nothing since: end of file (it closed, e.g. Postfix's
  // smtpd_timeout; the socket sits in CLOSE-WAIT) or an unsolicited reply
  // ("421 4.4.2 Timeout") means it is gone.
  bool quiet() const {
    if (!socket_->is_open() || !buffer_.empty()) return false;
    char byte;
    const ssize_t n = ::recv(socket_->native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  // What EHLO offered, kept for reuse.
  Reply ehlo;

 private:
  // A stalled smart host is cut off: the pending operation then fails.
  void arm() {
    watchdog_.expires_after(timeout_);
    // Holds the socket weakly: a late expiry after the client ended is a no-op.
    watchdog_.async_wait([weak = std::weak_ptr<tcp::socket>(socket_)](asio::error_code ec) {
      if (auto s = weak.lock(); s && !ec) s->close(ec);
    });
  }

  std::shared_ptr<tcp::socket> socket_;
  asio::steady_timer watchdog_;
  std::chrono::seconds timeout_;
  std::string buffer_;
  std::chrono::steady_clock::time_point idle_since_{};
};

// Idle connections of this front thread (each thread runs one io_context,
// so a connection is only ever used on the executor it was made on).
constexpr std::size_t kMaxIdle = 32;
constexpr auto kMaxIdleTime = std::chrono::seconds(30);  // well below servers' 300 s
thread_local std::vector<std::unique_ptr<SmtpClient>> t_idle;

std::unique_ptr<SmtpClient> take_idle() {
  const auto now = std::chrono::steady_clock::now();
  while (!t_idle.empty()) {
    std::unique_ptr<SmtpClient> c = std::move(t_idle.back());
    t_idle.pop_back();
    if (c->quiet() && now - c->idle_since() < kMaxIdleTime) return c;
  }
  return nullptr;
}

void give_back(std::unique_ptr<SmtpClient> c) {
  if (t_idle.size() >= kMaxIdle) return;  // closes it
  c->idle();
  t_idle.push_back(std::move(c));
}

// 2xx/3xx go on; 4xx or nothing → 451 4.4.1; 5xx is the client's answer.
bool failed(const std::optional<Reply>& r, int want_class, Reply& out) {
  if (r && r->code / 100 == want_class) return false;
  out = (r && r->code >= 500) ? *r : kRelayFailed;
  return true;
}

// What the smart host's EHLO offers (RFC 5321 4.1.1.1 keywords).
struct Offers {
  bool eightbit = false, smtputf8 = false, dsn = false, pipelining = false;
};

Offers offers_of(const Reply& ehlo) {
  Offers o;
  for (std::size_t i = 1; i < ehlo.lines.size(); ++i) {
    const std::string k = smtp::ascii_upper(ehlo.lines[i].substr(0, ehlo.lines[i].find(' ')));
    o.eightbit = o.eightbit || k == "8BITMIME";
    o.smtputf8 = o.smtputf8 || k == "SMTPUTF8";
    o.dsn = o.dsn || k == "DSN";
    o.pipelining = o.pipelining || k == "PIPELINING";
  }
  return o;
}

bool needs_smtputf8(const Envelope& e) {
  for (const auto& p : e.mail_parameters) {
    if (p.name == "SMTPUTF8") return true;
  }
  return false;
}

// The client's parameters the smart host understands: BODY with 8BITMIME,
// SMTPUTF8, and the DSN ones (RET, ENVID, NOTIFY, ORCPT) with DSN. SIZE
// and AUTH stay here.
std::vector<Parameter> pass_on(const std::vector<Parameter>& params, const Offers& o) {
  std::vector<Parameter> out;
  for (const auto& p : params) {
    const bool dsn = p.name == "RET" || p.name == "ENVID" || p.name == "NOTIFY" || p.name == "ORCPT";
    if ((p.name == "BODY" && o.eightbit) || (p.name == "SMTPUTF8" && o.smtputf8) || (dsn && o.dsn)) out.push_back(p);
  }
  return out;
}

// A fresh connection: greeting and EHLO; nullptr and `out` on failure.
asio::awaitable<std::unique_ptr<SmtpClient>> open_client(const SmartHostConfig& config, const Envelope& envelope,
                                                         Reply& out) {
  auto ex = co_await asio::this_coro::executor;
  auto c = std::make_unique<SmtpClient>(ex, config.timeout);
  const bool connected = co_await c->connect(config.host, config.port);
  if (!connected) {
    log::warning("relay queue_id={} smart_host={}:{} unreachable", envelope.queue_id, config.host, config.port);
    out = kRelayFailed;
    co_return nullptr;
  }
  std::optional<Reply> r = co_await c->read_reply();
  if (failed(r, 2, out)) co_return nullptr;
  r = co_await c->command("EHLO " + config.helo_name);
  if (failed(r, 2, out)) co_return nullptr;
  c->ehlo = *r;
  co_return c;
}

// RFC 5321 4.1.1.5: ends whatever transaction the smart host still holds
// after a refusal; true when the connection is clean for the next message.
asio::awaitable<bool> reset_transaction(SmtpClient& c) {
  std::optional<Reply> r = co_await c.command("RSET");
  co_return r.has_value() && r->code == 250;
}

// One transaction on an open connection. `fresh`: a dead kept connection
// before anything was accepted is reported as nullopt so the caller can
// try a fresh one.
asio::awaitable<std::optional<Reply>> transaction(SmtpClient& c, const Envelope& envelope, const std::string& received,
                                                  const std::string& message, bool& reusable) {
  reusable = false;
  Reply out;
  const Offers offers = offers_of(c.ehlo);
  if (needs_smtputf8(envelope) && !offers.smtputf8) {
    reusable = true;
    co_return Reply{550, "5.6.7", {"Smart host cannot take an SMTPUTF8 message"}};  // RFC 6531 3.6
  }
  std::vector<std::string> commands;
  commands.push_back("MAIL FROM:<" + envelope.sender + ">" + parameter_text(pass_on(envelope.mail_parameters, offers)));
  for (std::size_t i = 0; i < envelope.recipients.size(); ++i) {
    const auto params = i < envelope.rcpt_parameters.size() ? pass_on(envelope.rcpt_parameters[i], offers)
                                                            : std::vector<Parameter>{};
    commands.push_back("RCPT TO:<" + envelope.recipients[i] + ">" + parameter_text(params));
  }
  commands.push_back("DATA");
  // RFC 2920: with PIPELINING the whole group goes at once, the replies
  // come back in order; without it, one command per round trip.
  std::vector<std::optional<Reply>> replies;
  if (offers.pipelining) {
    std::string batch;
    for (const auto& cmd : commands) batch += cmd + "\r\n";
    const bool sent = co_await c.send(batch);
    if (!sent) co_return std::nullopt;
    for (std::size_t i = 0; i < commands.size(); ++i) {
      std::optional<Reply> r = co_await c.read_reply();
      if (!r) break;
      replies.push_back(std::move(r));
    }
  } else {
    for (const auto& cmd : commands) {
      std::optional<Reply> r = co_await c.command(cmd);
      replies.push_back(r);
      if (!r || r->code / 100 != (cmd == "DATA" ? 3 : 2)) break;
    }
  }
  // Nothing at all from MAIL (or a 421 there): a connection that died.
  if (replies.empty() || !replies[0] || replies[0]->code == 421) co_return std::nullopt;
  const bool data_open = replies.size() == commands.size() && replies.back() && replies.back()->code == 354;
  // A recipient the smart host refuses fails the whole message: the
  // client already has 250 for it, and a silent drop would lose mail.
  // Every reply we asked for has come (without PIPELINING the loop stops
  // at the first refusal, so there is none pending) and none said 421.
  bool in_step = offers.pipelining ? replies.size() == commands.size() : true;
  for (const auto& r : replies) in_step = in_step && r.has_value() && r->code != 421;
  for (std::size_t i = 0; i + 1 < commands.size(); ++i) {
    const std::optional<Reply> r = i < replies.size() ? replies[i] : std::nullopt;
    if (failed(r, 2, out)) {
      // DATA may have been opened for the recipients that passed: the
      // connection is dropped, so the smart host discards it unfinished.
      // Otherwise the accepted MAIL is still open there: RSET ends it.
      if (!data_open && in_step) {
        const bool clean = co_await reset_transaction(c);
        reusable = clean;
      }
      co_return out;
    }
  }
  const std::optional<Reply> data_reply = replies.size() == commands.size() ? replies.back() : std::nullopt;
  if (failed(data_reply, 3, out)) {
    if (in_step) {
      const bool clean = co_await reset_transaction(c);
      reusable = clean;
    }
    co_return out;
  }
  const bool sent = co_await c.send(dot_stuff(received, message));
  if (!sent) co_return kRelayFailed;
  std::optional<Reply> r = co_await c.read_reply();
  if (failed(r, 2, out)) {
    reusable = r.has_value() && r->code != 421;
    co_return out;
  }
  reusable = true;
  co_return Reply{250, "2.0.0", {"Ok: queued as " + envelope.queue_id}};
}

}  // namespace

bool parse_host_port(const std::string& text, std::string& host, std::string& port) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return false;
  host = text.substr(0, colon);
  port = text.substr(colon + 1);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return true;
}

asio::awaitable<Reply> relay_message(const SmartHostConfig& config, const Envelope& envelope,
                                     const std::string& received, const std::string& message) {
  Reply out;
  // A kept connection first; if it proves dead before MAIL was accepted,
  // one fresh connection.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<SmtpClient> c = attempt == 0 ? take_idle() : nullptr;
    const bool kept = c != nullptr;
    if (!c) {
      std::unique_ptr<SmtpClient> fresh = co_await open_client(config, envelope, out);
      if (!fresh) co_return out;
      c = std::move(fresh);
    }
    bool reusable = false;
    std::optional<Reply> r = co_await transaction(*c, envelope, received, message, reusable);
    if (!r) {
      if (kept) continue;  // the kept connection was dead: try a fresh one
      co_return kRelayFailed;
    }
    if (reusable) give_back(std::move(c));
    co_return *r;
  }
  co_return kRelayFailed;
}

}  // namespace mailhook::front
