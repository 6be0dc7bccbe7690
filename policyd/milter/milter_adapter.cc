// The milter protocol, version 6 (Sendmail's libmilter/docs and Postfix's
// MILTER_README describe it): length-prefixed packets, one command letter
// each. Commands become SessionEvents for the Runtime; decisions come back
// as replies and message changes. One thread accepts; each MTA connection
// then runs on the Lua worker its session is bound to, so a command, its
// hook and its reply stay on one thread.
#include "policyd/milter/milter_adapter.h"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "mailcore/telemetry/log.h"
#include "policyd/milter/milter_mapping.h"

namespace mailhook::policyd::milter {
namespace {

using asio::generic::stream_protocol;
using namespace std::chrono_literals;

constexpr std::uint32_t kProtocolVersion = 6;
constexpr std::size_t kChunk = 64 * 1024;       // message bytes per MESSAGE_CHUNK event
constexpr std::size_t kBodyReplyChunk = 65535;  // the largest REPLBODY packet MTAs take
constexpr auto kProgressEvery = 1s;             // SMFIR_PROGRESS while a hook.dot runs
constexpr std::size_t kKeptBuffer = 256 * 1024; // a read buffer past this is freed once empty

// MTA -> filter commands and filter -> MTA replies (mfdef.h's letters).
namespace cmd {
constexpr char kAbort = 'A', kBody = 'B', kConnect = 'C', kMacro = 'D', kEndOfBody = 'E', kHelo = 'H',
               kQuitNewConnection = 'K', kHeader = 'L', kMail = 'M', kEndOfHeader = 'N', kOptionNegotiation = 'O',
               kQuit = 'Q', kRcpt = 'R', kData = 'T', kUnknown = 'U';
}  // namespace cmd
namespace reply {
constexpr char kAddRcpt = '+', kDelRcpt = '-', kAddRcptPar = '2', kAccept = 'a', kReplaceBody = 'b',
               kContinue = 'c', kDiscard = 'd', kChangeFrom = 'e', kAddHeader = 'h', kInsertHeader = 'i',
               kChangeHeader = 'm', kProgress = 'p', kQuarantine = 'q', kReject = 'r', kTempfail = 't',
               kReplyCode = 'y', kOptionNegotiation = 'O';
}  // namespace reply

std::atomic<std::uint64_t> g_next_id{0};

std::string new_session_id() {
  return fmt::format("M{:X}{:06X}", static_cast<std::uint32_t>(std::time(nullptr)), g_next_id.fetch_add(1) & 0xFFFFFF);
}

std::uint32_t get_u32(std::string_view d, std::size_t at) {
  const auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(d[at + i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

void put_u32(std::string& out, std::uint32_t v) {
  out += static_cast<char>(v >> 24);
  out += static_cast<char>(v >> 16);
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v);
}

// NUL-terminated strings of a packet's data ("a\0b\0" -> a, b); a last
// string without its NUL counts too.
std::vector<std::string_view> strings_of(std::string_view d) {
  std::vector<std::string_view> v;
  while (!d.empty()) {
    const std::size_t nul = d.find('\0');
    v.push_back(d.substr(0, nul));
    if (nul == std::string_view::npos) break;
    d.remove_prefix(nul + 1);
  }
  return v;
}

// "MTA 127.0.0.1:40123" (or a unix socket), for the log.
std::string peer_name(const stream_protocol::socket& s) {
  std::error_code ec;
  const stream_protocol::endpoint ep = s.remote_endpoint(ec);
  if (ec) return "the MTA";
  char host[INET6_ADDRSTRLEN] = {};
  if (ep.protocol().family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(ep.data());
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return fmt::format("MTA {}:{}", host, ntohs(in->sin_port));
  }
  if (ep.protocol().family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ep.data());
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return fmt::format("MTA [{}]:{}", host, ntohs(in6->sin6_port));
  }
  return "MTA (unix socket)";
}

// Where decisions meet the connection waiting for them; touched on the
// connection's (= its session's worker's) thread only.
struct Mailbox {
  explicit Mailbox(asio::any_io_executor ex) : timer(std::move(ex)) {}
  std::deque<Decision> decisions;
  asio::steady_timer timer;  // the waiting connection sleeps on it; a delivery cancels it
};

class Observer final : public SessionObserver {
 public:
  Observer(asio::any_io_executor ex, std::shared_ptr<Mailbox> box) : ex_(std::move(ex)), box_(std::move(box)) {}
  ~Observer() override {
    asio::post(ex_, [box = std::move(box_)] {});  // the timer dies on its own thread
  }
  void opened(Capabilities, Decision connect) override { deliver(std::move(connect)); }
  void decided(Decision d) override { deliver(std::move(d)); }

 private:
  void deliver(Decision d) {
    asio::post(ex_, [box = box_, d = std::move(d)]() mutable {
      box->decisions.push_back(std::move(d));
      box->timer.cancel();
    });
  }
  asio::any_io_executor ex_;
  std::shared_ptr<Mailbox> box_;
};

class Connection;

struct Server {
  Runtime* runtime = nullptr;
  MilterConfig config;
  asio::io_context io{1};  // the acceptor's
  std::optional<asio::basic_socket_acceptor<stream_protocol>> acceptor;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::mutex mu;  // guards connections; the last one out notifies ended
  std::condition_variable ended;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;
};

Server* g_server = nullptr;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server& server, std::size_t worker, stream_protocol::socket socket)
      : server_(server),
        worker_(worker),
        socket_(std::move(socket)),
        watchdog_(socket_.get_executor()),
        box_(std::make_shared<Mailbox>(socket_.get_executor())),
        peer_(peer_name(socket_)) {}

  asio::awaitable<void> run() {
    auto self = shared_from_this();
    asio::co_spawn(socket_.get_executor(), watchdog(self), asio::detached);
    co_await serve();
    end_session();
    std::error_code ec;
    socket_.close(ec);
    watchdog_.cancel();
    std::lock_guard l(server_.mu);
    server_.connections.erase(this);
    if (server_.connections.empty()) server_.ended.notify_all();
  }

  asio::any_io_executor executor() { return socket_.get_executor(); }

  // stop_milter, on the connection's thread: one waiting on a decision
  // answers tempfail; an idle one is closed.
  void stop() {
    if (waiting_) {
      box_->timer.cancel();
    } else {
      std::error_code ec;
      socket_.close(ec);
    }
  }

 private:
  // ------------------------------------------------------------- I/O

  // The next packet, or nullopt when the MTA left, timed out or sent one
  // that is malformed or too large (the connection then ends). The view
  // stays valid until the next call.
  asio::awaitable<std::optional<std::pair<char, std::string_view>>> next_packet() {
    begin_ += used_;
    used_ = 0;
    if (begin_ == end_) {
      begin_ = end_ = 0;
      if (in_.size() > kKeptBuffer) std::vector<char>().swap(in_);  // after a large packet
    }
    for (;;) {
      std::size_t need = 4;
      if (end_ - begin_ >= 4) {
        const std::uint32_t len = get_u32(std::string_view(in_.data() + begin_, 4), 0);
        if (len == 0 || len > server_.config.max_packet) {
          log::warning("milter: {} sent a packet of {} bytes (--milter-max-packet {}); closing", peer_, len,
                       server_.config.max_packet);
          co_return std::nullopt;
        }
        need = 4 + std::size_t{len};
        if (end_ - begin_ >= need) {
          used_ = need;
          co_return std::make_pair(in_[begin_ + 4], std::string_view(in_.data() + begin_ + 5, len - 1));
        }
      }
      if (begin_ > 0) {  // keep the partial packet at the front
        std::memmove(in_.data(), in_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (in_.size() < std::max(need, end_ + 4096)) in_.resize(std::max(need, end_ + 16 * 1024));
      read_deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(server_.config.timeout_s);
      std::error_code ec;
      const std::size_t n = co_await socket_.async_read_some(asio::buffer(in_.data() + end_, in_.size() - end_),
                                                             asio::redirect_error(asio::use_awaitable, ec));
      read_deadline_ = std::chrono::steady_clock::time_point::max();
      end_ += n;
      if (ec) co_return std::nullopt;
    }
  }

  // Closes a connection that stays silent past --milter-timeout. Sleeps
  // until the deadline of the read under way, so an idle connection costs
  // no wake-ups.
  static asio::awaitable<void> watchdog(std::shared_ptr<Connection> self) {
    const auto timeout = std::chrono::seconds(self->server_.config.timeout_s);
    while (self->socket_.is_open()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= self->read_deadline_) {
        log::warning("milter: {} silent for {} s (--milter-timeout); closing", self->peer_, timeout.count());
        std::error_code ec;
        self->socket_.close(ec);
        break;
      }
      self->watchdog_.expires_at(self->read_deadline_ == std::chrono::steady_clock::time_point::max()
                                     ? now + timeout
                                     : self->read_deadline_);
      std::error_code ec;
      co_await self->watchdog_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  void queue(char letter, std::string_view data = {}) {
    put_u32(out_, static_cast<std::uint32_t>(data.size() + 1));
    out_ += letter;
    out_.append(data);
  }

  asio::awaitable<bool> flush() {
    if (out_.empty()) co_return true;
    std::error_code ec;
    co_await asio::async_write(socket_, asio::buffer(out_), asio::redirect_error(asio::use_awaitable, ec));
    out_.clear();
    co_return !ec;
  }

  // ------------------------------------------------------ the session

  asio::awaitable<void> serve() {
    for (;;) {
      auto packet = co_await next_packet();
      if (!packet) co_return;
      const char letter = packet->first;
      const std::string_view data = packet->second;
      bool go_on = true;
      switch (letter) {
        case cmd::kOptionNegotiation: go_on = negotiate_options(data); break;
        case cmd::kMacro: take_macros(data); break;
        case cmd::kConnect: {
          const bool ok = co_await on_connect(data);
          go_on = ok;
          break;
        }
        case cmd::kHelo: co_await on_helo(data); break;
        case cmd::kMail: co_await on_envelope(data, EventKind::Mail, flag::kNrMail); break;
        case cmd::kRcpt: co_await on_envelope(data, EventKind::Rcpt, flag::kNrRcpt); break;
        case cmd::kData: co_await on_simple(EventKind::Data, "DATA", flag::kNrData); break;
        case cmd::kUnknown: co_await on_unknown(data); break;
        case cmd::kHeader: {
          const auto s = strings_of(data);
          add_message_bytes(header_bytes(s.size() > 0 ? s[0] : "", s.size() > 1 ? s[1] : ""));
          no_reply(flag::kNrHdr);
          break;
        }
        case cmd::kEndOfHeader:
          add_message_bytes("\r\n");
          no_reply(flag::kNrEoh);
          break;
        case cmd::kBody:
          add_message_bytes(data);
          no_reply(flag::kNrBody);
          break;
        case cmd::kEndOfBody:
          add_message_bytes(data);  // a last chunk may ride along
          co_await on_end_of_message();
          break;
        case cmd::kAbort: reset_transaction(); break;
        case cmd::kQuit: co_return;
        case cmd::kQuitNewConnection: end_session(); break;  // the MTA reuses the connection
        default:
          log::warning("milter: {} sent an unknown command {:?}; closing", peer_, letter);
          co_return;
      }
      if (!go_on) co_return;
      const bool written = co_await flush();
      if (!written || server_.stopping) co_return;
    }
  }

  // SMFIC_OPTNEG: version, actions, protocol steps offered; we answer with
  // what the scripts need (milter_mapping.cc).
  bool negotiate_options(std::string_view d) {
    if (d.size() < 12 || get_u32(d, 0) < 2) {
      log::warning("milter: {} sent a malformed option negotiation; closing", peer_);
      return false;
    }
    caps_ = server_.runtime->capabilities();
    const Negotiation n = negotiate(*caps_, get_u32(d, 4), get_u32(d, 8));
    actions_ = n.actions;
    protocol_ = n.protocol;
    std::string o;
    put_u32(o, std::min<std::uint32_t>(kProtocolVersion, get_u32(d, 0)));
    put_u32(o, static_cast<std::uint32_t>(actions_));
    put_u32(o, static_cast<std::uint32_t>(protocol_));
    queue(reply::kOptionNegotiation, o);
    return true;
  }

  // SMFIC_MACRO: the step's letter, then name/value pairs. "{x}" and "x"
  // name the same one-letter macro.
  void take_macros(std::string_view d) {
    if (d.empty()) return;
    const auto s = strings_of(d.substr(1));
    for (std::size_t i = 0; i + 1 < s.size(); i += 2) {
      std::string_view name = s[i];
      if (name.size() == 3 && name.front() == '{' && name.back() == '}') name = name.substr(1, 1);
      macros_[std::string(name)] = std::string(s[i + 1]);
    }
    macros_changed_ = true;
  }

  // The macros into the facts (client.macros and what derives from them);
  // sent with the next event.
  void absorb_macros() {
    if (!macros_changed_) return;
    macros_changed_ = false;
    for (const std::string& name : known_macros()) {
      if (auto it = macros_.find(name); it != macros_.end()) facts_.attributes[name] = it->second;
    }
    auto macro = [&](const char* name) -> const std::string* {
      auto it = macros_.find(name);
      return it == macros_.end() || it->second.empty() ? nullptr : &it->second;
    };
    if (auto* v = macro("{tls_version}")) facts_.tls_protocol = *v;
    if (auto* v = macro("{cipher}")) facts_.tls_cipher = *v;
    if (auto* v = macro("{auth_authen}")) facts_.auth_user = *v;
    if (auto* v = macro("{daemon_addr}")) facts_.local_address = *v;
    if (auto* v = macro("{daemon_port}")) facts_.local_port = static_cast<std::uint32_t>(std::atoi(v->c_str()));
    facts_dirty_ = true;
  }

  const Capabilities& caps() {
    if (!caps_) caps_ = server_.runtime->capabilities();  // an MTA that does not negotiate
    return *caps_;
  }

  // A step the MTA may have been told needs no reply.
  void no_reply(unsigned long nr_flag) {
    if (!(protocol_ & nr_flag)) queue(reply::kContinue);
  }

  SessionEvent stamp(SessionEvent e) {
    e.seq = ++seq_;
    e.transaction_id = transaction_id_;
    e.helo = helo_;
    if (facts_dirty_) {
      e.client = facts_;
      facts_dirty_ = false;
    }
    return e;
  }

  void notify(SessionEvent e) {
    if (!session_) return;
    e.wants_reply = false;
    session_->post(stamp(std::move(e)));
  }

  // The decision for `seq`; nullopt when policyd is stopping. With
  // `progress`, SMFIR_PROGRESS goes out every second of the wait.
  asio::awaitable<std::optional<Decision>> decision(std::uint64_t seq, bool progress) {
    waiting_ = true;
    for (;;) {
      auto& q = box_->decisions;
      while (!q.empty() && q.front().seq < seq) q.pop_front();  // answers nobody waits for
      if (!q.empty()) {
        Decision d = std::move(q.front());
        q.pop_front();
        waiting_ = false;
        co_return d;
      }
      if (server_.stopping || !socket_.is_open()) break;
      box_->timer.expires_after(kProgressEvery);
      std::error_code ec;
      co_await box_->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!ec && progress) {
        queue(reply::kProgress);
        const bool written = co_await flush();
        if (!written) break;
      }
    }
    waiting_ = false;
    co_return std::nullopt;
  }

  asio::awaitable<std::optional<Decision>> ask(SessionEvent e, bool progress = false) {
    if (!session_) co_return std::nullopt;
    e.wants_reply = true;
    e = stamp(std::move(e));
    const std::uint64_t seq = e.seq;
    session_->post(std::move(e));
    auto d = co_await decision(seq, progress);
    co_return d;
  }

  // A decision as the step's reply: continue, or the script's 4xx/5xx.
  // At connect the protocol allows no text (the MTA's own reply is used).
  void answer(const std::optional<Decision>& d, bool with_text = true) {
    if (!d) {  // policyd is stopping: never accept blind
      queue(reply::kTempfail);
      return;
    }
    const MilterReply r = milter_reply(*d);
    if (r.status == Status::Continue) {
      queue(reply::kContinue);
      return;
    }
    if (!with_text) {
      queue(r.status == Status::Reject ? reply::kReject : reply::kTempfail);
      return;
    }
    queue(reply::kReplyCode, reply_text(r));
  }

  // SMFIR_REPLYCODE's text: "550 5.7.1 text", or "550-5.7.1 a\r\n550 5.7.1 b"
  // (a multi-line reply needs an enhanced code: 4.0.0 / 5.0.0 by default).
  static std::string reply_text(const MilterReply& r) {
    std::string out;
    if (r.lines.size() <= 1) {
      out = r.code;
      if (!r.enhanced.empty()) out += " " + r.enhanced;
      out += " ";
      if (!r.lines.empty()) out += r.lines[0];
    } else {
      const std::string x = r.enhanced.empty() ? (r.code[0] == '4' ? "4.0.0" : "5.0.0") : r.enhanced;
      for (std::size_t i = 0; i < r.lines.size(); ++i) {
        const bool last = i + 1 == r.lines.size();
        out += r.code + (last ? " " : "-") + x + " " + r.lines[i] + (last ? "" : "\r\n");
      }
    }
    out += '\0';
    return out;
  }

  // SMFIC_CONNECT: hostname, family ('4', '6', 'L' or 'U'), port, address.
  asio::awaitable<bool> on_connect(std::string_view d) {
    end_session();  // a second CONNECT on one connection starts afresh
    const std::size_t nul = d.find('\0');
    if (nul == std::string_view::npos || nul + 1 >= d.size()) {
      log::warning("milter: {} sent a malformed CONNECT; closing", peer_);
      co_return false;
    }
    const std::string_view hostname = d.substr(0, nul);
    const char family = d[nul + 1];
    facts_ = ClientFacts();
    if (family == '4' || family == '6' || family == 'L') {
      std::string_view rest = d.substr(nul + 2);
      if (rest.size() >= 2) {
        facts_.port = static_cast<std::uint32_t>(static_cast<unsigned char>(rest[0]) << 8 |
                                                 static_cast<unsigned char>(rest[1]));
        const auto s = strings_of(rest.substr(2));
        if (!s.empty() && family != 'L') facts_.address = std::string(s[0]);
      }
    }
    // The MTA's verified name; "[192.0.2.1]" means it has none.
    if (!hostname.empty() && hostname[0] != '[') facts_.host = std::string(hostname);
    macros_changed_ = true;
    absorb_macros();
    facts_dirty_ = false;
    id_ = new_session_id();
    SessionStart start;
    start.session_id = id_;
    start.client = facts_;
    session_ = server_.runtime->open_on(worker_, std::move(start),
                                        std::make_shared<Observer>(socket_.get_executor(), box_));
    if (!caps().connect_hook) {
      no_reply(flag::kNrConn);
      co_return true;
    }
    auto connect = co_await decision(0, false);
    answer(connect, false);
    co_return true;
  }

  asio::awaitable<void> on_helo(std::string_view d) {
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

  asio::awaitable<void> on_envelope(std::string_view d, EventKind kind, unsigned long nr_flag) {
    if (kind == EventKind::Mail) begin_transaction();
    absorb_macros();
    std::vector<std::string> args;
    for (std::string_view a : strings_of(d)) args.emplace_back(a);
    if (!caps().events.has(kind)) {
      no_reply(nr_flag);
      co_return;
    }
    SessionEvent e;
    e.kind = kind;
    parse_envelope_args(args, e.address, e.parameters);
    e.input = kind == EventKind::Mail ? "MAIL FROM:" : "RCPT TO:";
    for (std::size_t i = 0; i < args.size(); ++i) e.input += (i ? " " : "") + args[i];
    auto dec = co_await ask(std::move(e));
    answer(dec);
  }

  asio::awaitable<void> on_simple(EventKind kind, const char* input, unsigned long nr_flag) {
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

  asio::awaitable<void> on_unknown(std::string_view d) {
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

  asio::awaitable<void> on_end_of_message() {
    absorb_macros();
    if (!caps().events.has(EventKind::EndOfMessage)) {
      queue(reply::kContinue);
      reset_transaction();
      co_return;
    }
    flush_message();
    SessionEvent e;
    e.kind = EventKind::EndOfMessage;
    e.message_size = message_size_;
    const std::optional<Decision> d = co_await ask(std::move(e), true);  // PROGRESS while hook.dot runs
    const bool refused = !d || (d->action == Decision::Action::Reply && d->reply.code >= 400);
    bool discard = false;
    if (!refused && !queue_changes(d->changes, discard)) {
      queue(reply::kTempfail);  // half-applied changes must not be delivered
    } else if (discard) {
      queue(reply::kDiscard);
    } else {
      answer(d);
    }
    reset_transaction();
  }

  // The message changes of hook.dot as modification packets, each only if
  // negotiated; false (and nothing queued) when one was not.
  bool queue_changes(const std::vector<MessageChange>& changes, bool& discard) {
    const std::size_t mark = out_.size();
    auto allowed = [&](unsigned long action, const char* what) {
      if (actions_ & action) return true;
      log::warning("session={} milter: the MTA did not allow {}", id_, what);
      return false;
    };
    auto z = [](std::string_view s) { return std::string(s) + '\0'; };
    bool ok = true;
    for (const MessageChange& ch : changes) {
      const std::string value = milter_header_value(ch.value);
      std::string p;
      switch (ch.kind) {
        case MessageChange::Kind::AddHeader:
          if ((ok = allowed(flag::kAddHdrs, "adding headers"))) queue(reply::kAddHeader, z(ch.name) + z(value));
          break;
        case MessageChange::Kind::InsertHeader:
          if ((ok = allowed(flag::kAddHdrs, "inserting headers"))) {
            put_u32(p, static_cast<std::uint32_t>(ch.index));
            queue(reply::kInsertHeader, p + z(ch.name) + z(value));
          }
          break;
        case MessageChange::Kind::ChangeHeader:
          if ((ok = allowed(flag::kChgHdrs, "changing headers"))) {
            put_u32(p, static_cast<std::uint32_t>(ch.index));
            queue(reply::kChangeHeader, p + z(ch.name) + z(ch.erase ? std::string() : value));
          }
          break;
        case MessageChange::Kind::AddRcpt:
          if (ch.name.empty()) {
            if ((ok = allowed(flag::kAddRcpt, "adding recipients"))) queue(reply::kAddRcpt, z("<" + ch.value + ">"));
          } else if ((ok = allowed(flag::kAddRcptPar, "adding recipients with ESMTP arguments"))) {
            queue(reply::kAddRcptPar, z("<" + ch.value + ">") + z(ch.name));
          }
          break;
        case MessageChange::Kind::DelRcpt:
          if ((ok = allowed(flag::kDelRcpt, "removing recipients"))) queue(reply::kDelRcpt, z("<" + ch.value + ">"));
          break;
        case MessageChange::Kind::ChangeFrom:
          if ((ok = allowed(flag::kChgFrom, "changing the sender"))) queue(reply::kChangeFrom, z("<" + ch.value + ">"));
          break;
        case MessageChange::Kind::ReplaceBody:
          if ((ok = allowed(flag::kChgBody, "replacing the body"))) {
            std::string_view body = ch.value;
            do {
              const std::string_view part = body.substr(0, kBodyReplyChunk);
              queue(reply::kReplaceBody, part);
              body.remove_prefix(part.size());
            } while (!body.empty());
          }
          break;
        case MessageChange::Kind::Quarantine:
          if ((ok = allowed(flag::kQuarantine, "quarantine"))) queue(reply::kQuarantine, z(ch.value));
          break;
        case MessageChange::Kind::Discard: discard = true; break;
      }
      if (!ok) {
        out_.resize(mark);
        return false;
      }
    }
    return true;
  }

  // ----------------------------------------------------- transactions

  void begin_transaction() {
    transaction_id_ = id_ + "T" + std::to_string(++transactions_);
    pending_bytes_.clear();
    message_size_ = 0;
  }

  void reset_transaction() {
    if (caps().events.has(EventKind::Reset)) {
      SessionEvent e;
      e.kind = EventKind::Reset;
      notify(std::move(e));
    }
    transaction_id_.clear();
    pending_bytes_.clear();
    message_size_ = 0;
  }

  void add_message_bytes(std::string_view bytes) {
    message_size_ += bytes.size();
    if (!caps().wants_message) return;
    pending_bytes_.append(bytes);
    if (pending_bytes_.size() >= kChunk) flush_message();
  }

  void flush_message() {
    if (pending_bytes_.empty()) return;
    SessionEvent e;
    e.kind = EventKind::MessageChunk;
    e.chunk = std::move(pending_bytes_);
    pending_bytes_.clear();
    notify(std::move(e));
  }

  // CLOSE to the scripts, then the runtime session ends.
  void end_session() {
    if (!session_) return;
    if (caps().events.has(EventKind::Close)) {
      SessionEvent e;
      e.kind = EventKind::Close;
      notify(std::move(e));
    }
    session_->close();
    session_.reset();
    transaction_id_.clear();
    transactions_ = 0;
    helo_.clear();
    box_->decisions.clear();
  }

  Server& server_;
  const std::size_t worker_;  // the Lua worker whose thread runs this connection
  stream_protocol::socket socket_;
  asio::steady_timer watchdog_;
  std::chrono::steady_clock::time_point read_deadline_ = std::chrono::steady_clock::time_point::max();
  std::shared_ptr<Mailbox> box_;
  const std::string peer_;  // for the log
  bool waiting_ = false;
  std::vector<char> in_;
  std::size_t begin_ = 0, end_ = 0, used_ = 0;  // in_[begin_, end_) is unread; the packet handed out is used_ long
  std::string out_;
  std::optional<Capabilities> caps_;
  unsigned long actions_ = 0;
  unsigned long protocol_ = 0;  // 0 until negotiated: every step is answered
  std::map<std::string, std::string> macros_;
  bool macros_changed_ = false;
  ClientFacts facts_;
  bool facts_dirty_ = false;
  std::shared_ptr<Session> session_;
  std::string id_;
  std::uint64_t seq_ = 0;
  std::uint64_t transactions_ = 0;
  std::string transaction_id_;
  std::string helo_;
  std::string pending_bytes_;
  std::uint64_t message_size_ = 0;
};

asio::awaitable<void> accept_loop(Server& s) {
  for (;;) {
    std::error_code ec;
    stream_protocol::socket socket = co_await s.acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (!s.acceptor->is_open() || ec == asio::error::operation_aborted) co_return;
      log::warning("milter: accept: {}", ec.message());
      continue;
    }
    if (s.stopping) continue;
    // The connection moves to the worker that will run its session.
    const std::size_t worker = s.runtime->least_busy_worker();
    const stream_protocol protocol = socket.local_endpoint(ec).protocol();
    stream_protocol::socket moved(s.runtime->worker_executor(worker));
    if (!ec) moved.assign(protocol, socket.release(ec), ec);
    if (ec) {
      log::warning("milter: cannot hand a connection to a worker: {}", ec.message());
      continue;
    }
    auto c = std::make_shared<Connection>(s, worker, std::move(moved));
    {
      std::lock_guard l(s.mu);
      s.connections.emplace(c.get(), c);
    }
    asio::co_spawn(c->executor(), [c]() { return c->run(); }, asio::detached);
  }
}

// "inet:PORT@HOST", "inet6:PORT@HOST", "unix:PATH" / "local:PATH" (and a
// bare path) as an endpoint; "" or why not.
std::string endpoint_of(const std::string& spec, stream_protocol::endpoint& out, std::string& unix_path) {
  const std::size_t colon = spec.find(':');
  const std::string kind = colon == std::string::npos ? "unix" : spec.substr(0, colon);
  const std::string rest = colon == std::string::npos ? spec : spec.substr(colon + 1);
  if (kind == "unix" || kind == "local") {
    if (rest.empty() || rest.size() >= 108) return "a unix socket path of 1 to 107 bytes";
    out = asio::local::stream_protocol::endpoint(rest);
    unix_path = rest;
    return "";
  }
  if (kind != "inet" && kind != "inet6") return "expected inet:PORT@HOST, inet6:PORT@HOST or unix:PATH";
  const std::size_t at = rest.find('@');
  const std::string port = rest.substr(0, at);
  std::string host = at == std::string::npos ? (kind == "inet6" ? "::" : "0.0.0.0") : rest.substr(at + 1);
  if (host == "*" || host.empty()) host = kind == "inet6" ? "::" : "0.0.0.0";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 1 || p > 65535) return "the port must be 1 to 65535";
  std::error_code ec;
  asio::ip::address a = asio::ip::make_address(host, ec);
  if (ec) {  // a name such as localhost: looked up once, at start
    asio::io_context io;
    asio::ip::tcp::resolver r(io);
    const auto found = r.resolve(kind == "inet6" ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), host, port, ec);
    if (ec || found.empty()) return "cannot resolve " + host;
    a = found.begin()->endpoint().address();
  }
  out = asio::ip::tcp::endpoint(a, static_cast<unsigned short>(p));
  return "";
}

}  // namespace

std::string start_milter(Runtime& runtime, const MilterConfig& config) {
  auto s = std::make_unique<Server>();
  s->runtime = &runtime;
  s->config = config;
  stream_protocol::endpoint ep;
  std::string unix_path;
  if (std::string e = endpoint_of(config.socket, ep, unix_path); !e.empty()) return "--milter " + config.socket + ": " + e;
  if (!unix_path.empty()) {
    std::error_code ec;
    if (std::filesystem::is_socket(unix_path, ec)) std::filesystem::remove(unix_path, ec);  // a stale socket
  }
  std::error_code ec;
  s->acceptor.emplace(s->io);
  s->acceptor->open(ep.protocol(), ec);
  if (!ec && unix_path.empty()) s->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s->acceptor->bind(ep, ec);
  if (!ec) s->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return "--milter " + config.socket + ": cannot listen: " + ec.message();
  asio::co_spawn(s->io, accept_loop(*s), asio::detached);
  Server* raw = s.release();
  g_server = raw;
  raw->thread = std::thread([raw] { raw->io.run(); });
  return "";
}

void stop_accepting() {
  Server* s = g_server;
  if (!s) return;
  asio::post(s->io, [s] {
    std::error_code ec;
    s->acceptor->close(ec);
  });
}

void stop_milter() {
  Server* s = g_server;
  if (!s) return;
  s->stopping = true;
  stop_accepting();
  s->thread.join();  // the acceptor is closed: its loop has nothing left
  std::unique_lock l(s->mu);
  for (auto& [raw, weak] : s->connections) {
    if (auto c = weak.lock()) asio::post(c->executor(), [c] { c->stop(); });
  }
  // Each answers what it waits on (tempfail) and closes; the workers still
  // run. Bounded: a worker stuck in a hook has --hook-timeout.
  s->ended.wait_for(l, std::chrono::seconds(10), [s] { return s->connections.empty(); });
}

}  // namespace mailhook::policyd::milter
