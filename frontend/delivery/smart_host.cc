// The SMTP client side of the relay: one connection per message, EHLO,
// MAIL, RCPT per recipient, DATA, the dot-stuffed message, QUIT.
#include "frontend/delivery/smart_host.h"

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
};

// 2xx/3xx go on; 4xx or nothing → 451 4.4.1; 5xx is the client's answer.
bool failed(const std::optional<Reply>& r, int want_class, Reply& out) {
  if (r && r->code / 100 == want_class) return false;
  out = (r && r->code >= 500) ? *r : kRelayFailed;
  return true;
}

// What the smart host's EHLO offers (RFC 5321 4.1.1.1 keywords).
struct Offers {
  bool eightbit = false, smtputf8 = false, dsn = false;
};

Offers offers_of(const Reply& ehlo) {
  Offers o;
  for (std::size_t i = 1; i < ehlo.lines.size(); ++i) {
    const std::string k = smtp::ascii_upper(ehlo.lines[i].substr(0, ehlo.lines[i].find(' ')));
    o.eightbit = o.eightbit || k == "8BITMIME";
    o.smtputf8 = o.smtputf8 || k == "SMTPUTF8";
    o.dsn = o.dsn || k == "DSN";
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
  auto ex = co_await asio::this_coro::executor;
  SmtpClient c(ex, config.timeout);
  Reply out;
  const bool connected = co_await c.connect(config.host, config.port);
  if (!connected) {
    log::warning("relay queue_id={} smart_host={}:{} unreachable", envelope.queue_id, config.host, config.port);
    co_return kRelayFailed;
  }
  std::optional<Reply> r = co_await c.read_reply();
  if (failed(r, 2, out)) co_return out;
  r = co_await c.command("EHLO " + config.helo_name);
  if (failed(r, 2, out)) co_return out;
  const Offers offers = offers_of(*r);
  if (needs_smtputf8(envelope) && !offers.smtputf8) {
    co_return Reply{550, "5.6.7", {"Smart host cannot take an SMTPUTF8 message"}};  // RFC 6531 3.6
  }
  r = co_await c.command("MAIL FROM:<" + envelope.sender + ">" + parameter_text(pass_on(envelope.mail_parameters, offers)));
  if (failed(r, 2, out)) co_return out;
  // A recipient the smart host refuses fails the whole message: the
  // client already has 250 for it, and a silent drop would lose mail.
  for (std::size_t i = 0; i < envelope.recipients.size(); ++i) {
    const auto params = i < envelope.rcpt_parameters.size() ? pass_on(envelope.rcpt_parameters[i], offers)
                                                            : std::vector<Parameter>{};
    r = co_await c.command("RCPT TO:<" + envelope.recipients[i] + ">" + parameter_text(params));
    if (failed(r, 2, out)) co_return out;
  }
  r = co_await c.command("DATA");
  if (failed(r, 3, out)) co_return out;
  const bool sent = co_await c.send(dot_stuff(received, message));
  if (!sent) co_return kRelayFailed;
  r = co_await c.read_reply();
  if (failed(r, 2, out)) co_return out;
  r = co_await c.command("QUIT");
  co_return Reply{250, "2.0.0", {"Ok: queued as " + envelope.queue_id}};
}

}  // namespace mailhook::front
