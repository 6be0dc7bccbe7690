// One MTA connection: reads packets (milter_codec.h), opens and ends the
// runtime session, waits for decisions and writes what the scripts decide.
// Runs as a coroutine on its session's Lua worker thread; a Mailbox
// carries the decisions to it there. The commands after CONNECT and the
// transaction they build are in milter_commands.cc.
#include "policyd/milter/milter_connection.h"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdlib>
#include <ctime>
#include <span>
#include <vector>

#include "mailcore/telemetry/log.h"
#include "mailcore/util/fifo.h"
#include "policyd/milter/milter_mapping.h"

namespace mailhook::policyd::milter {

using asio::generic::stream_protocol;
using namespace std::chrono_literals;

constexpr auto kProgressEvery = 1s;        // SMFIR_PROGRESS while a hook.dot runs

// Where decisions meet the connection waiting for them; touched on the
// connection's (= its session's worker's) thread only.
struct Mailbox {
  explicit Mailbox(asio::any_io_executor ex) : timer(std::move(ex)) {}
  Fifo<Decision> decisions;  // allocates nothing while the connection idles
  asio::steady_timer timer;  // the waiting connection sleeps on it; a delivery cancels it
};

namespace {

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

}  // namespace

Connection::Connection(ConnectionHost& host, std::size_t worker, stream_protocol::socket socket)
    : server_(host),
      worker_(worker),
      socket_(std::move(socket)),
      watchdog_(socket_.get_executor()),
      box_(std::make_shared<Mailbox>(socket_.get_executor())),
      peer_(peer_name(socket_)),
      in_(host.config.max_packet),
      state_(host.config.limits) {}

asio::awaitable<void> Connection::run() {
  auto self = shared_from_this();
  asio::co_spawn(socket_.get_executor(), watchdog(self), asio::detached);
  co_await serve();
  end_session();
  std::error_code ec;
  socket_.close(ec);
  watchdog_.cancel();
  std::lock_guard l(server_.mu);
  if (server_.connections.erase(this) > 0 && server_.connections_open) server_.connections_open->add(-1);
  if (server_.connections.empty()) server_.ended.notify_all();
}

void Connection::stop() {
  if (waiting_) {
    box_->timer.cancel();
  } else {
    std::error_code ec;
    socket_.close(ec);
  }
}

// ----------------------------------------------------------------- I/O

// The next packet, or nullopt when the MTA left, timed out or sent one
// that is malformed or too large (the connection then ends). The view
// stays valid until the next call.
asio::awaitable<std::optional<Packet>> Connection::next_packet() {
  for (;;) {
    const PacketReader::Next next = in_.next();
    if (next.status == PacketReader::Status::Packet) co_return next.packet;
    if (next.status == PacketReader::Status::Refused) {
      log::warning("milter: {} sent a packet of {} bytes (--milter-max-packet {}); closing", peer_, next.length,
                   server_.config.max_packet);
      server_.tripped("--milter-max-packet");
      co_return std::nullopt;
    }
    const std::span<char> room = in_.room();
    io_deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(server_.config.timeout_s);
    std::error_code ec;
    const std::size_t n = co_await socket_.async_read_some(asio::buffer(room.data(), room.size()),
                                                           asio::redirect_error(asio::use_awaitable, ec));
    io_deadline_ = std::chrono::steady_clock::time_point::max();
    in_.commit(n);
    if (ec) co_return std::nullopt;
  }
}

// Closes a connection that stays silent past --milter-timeout, or that
// does not take our replies for as long (an MTA that sends and never
// reads). Sleeps until the deadline of the read or write under way, so an
// idle connection costs no wake-ups.
asio::awaitable<void> Connection::watchdog(std::shared_ptr<Connection> self) {
  const auto timeout = std::chrono::seconds(self->server_.config.timeout_s);
  while (self->socket_.is_open()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= self->io_deadline_) {
      log::warning("milter: {} {} for {} s (--milter-timeout); closing", self->peer_,
                   self->writing_ ? "not reading our replies" : "silent", timeout.count());
      self->server_.tripped("--milter-timeout");
      std::error_code ec;
      self->socket_.close(ec);
      break;
    }
    self->watchdog_.expires_at(self->io_deadline_ == std::chrono::steady_clock::time_point::max()
                                   ? now + timeout
                                   : self->io_deadline_);
    std::error_code ec;
    co_await self->watchdog_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<bool> Connection::flush() {
  if (out_.empty()) co_return true;
  std::error_code ec;
  io_deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(server_.config.timeout_s);
  writing_ = true;
  co_await asio::async_write(socket_, asio::buffer(out_), asio::redirect_error(asio::use_awaitable, ec));
  writing_ = false;
  io_deadline_ = std::chrono::steady_clock::time_point::max();
  out_.clear();
  co_return !ec;
}

// --------------------------------------------------------- the session

asio::awaitable<void> Connection::serve() {
  for (;;) {
    auto packet = co_await next_packet();
    if (!packet) co_return;
    const char letter = packet->letter;
    const std::string_view data = packet->data;
    if (!enter_stage(letter)) continue;
    if (!well_formed(letter, data)) {
      log::warning("milter: {} sent a malformed {:?} command ({} bytes); closing", peer_, letter, data.size());
      co_return;
    }
    // The bounded state sees every packet taken in order before the
    // session acts on it: macros, session ends, the message's limits
    // (milter_state.h).
    const ConnectionState::Step step = state_.take(letter, data);
    if (step.close) {
      log::warning("milter: {} sent macros past {} (count {}/{}, bytes {}/{}); closing", peer_, step.why,
                   state_.macro_count(), server_.config.limits.max_macros, state_.macro_bytes(),
                   server_.config.limits.max_macro_bytes);
      server_.tripped(step.why);
      co_return;
    }
    if (step.refused_now != Refusal::None) {
      log::warning("session={} milter: message refused past {} ({} bytes, {} header fields so far): {}", id_,
                   refusal_flag(step.refused_now), state_.message_size(), state_.headers(),
                   refusal_reply(step.refused_now).summary());
      server_.tripped(refusal_flag(step.refused_now));
      log_limit_refusal(letter, step.refused_now);
      pending_bytes_.clear();  // nothing more of it is stored
    }
    const bool keep = state_.refusal() == Refusal::None;
    bool go_on = true;
    switch (letter) {
      case cmd::kOptionNegotiation: go_on = negotiate_options(data); break;
      case cmd::kMacro: break;  // taken by state_
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
        if (keep) add_message_bytes(header_bytes(s.size() > 0 ? s[0] : "", s.size() > 1 ? s[1] : ""));
        content_reply(flag::kNrHdr);
        break;
      }
      case cmd::kEndOfHeader:
        if (keep) add_message_bytes("\r\n");
        content_reply(flag::kNrEoh);
        break;
      case cmd::kBody:
        if (keep) add_message_bytes(data);
        content_reply(flag::kNrBody);
        break;
      case cmd::kEndOfBody:
        if (keep) add_message_bytes(data);  // a last chunk may ride along
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

// Whether the command may come now, by libmilter's table of which stage
// follows which (milter_codec.h); the stage it enters if so. One out of
// order is ignored, with no reply, as libmilter ignores it: the filters
// every MTA is written against never see it, nor do the scripts here (a
// RCPT before MAIL, a header after the body, a message's end twice). Like
// libmilter, a transaction it interrupts ends, and the order starts again
// from HELO. Unlike libmilter, QUIT_NC, and CONNECT once negotiated, are
// taken at any stage, each ending the session (libmilter ignores them
// outside their place and runs the next SMTP session's commands in the
// old one's context): nothing of a session must reach the next one on the
// same connection.
bool Connection::enter_stage(char letter) {
  const Stage to = stage_of(letter);
  const bool new_session = to == Stage::QuitNewConnection || (to == Stage::Connect && stage_ != Stage::Init);
  if (to == Stage::None || to == Stage::Quit || new_session) {
    if (new_session && in_transaction(stage_)) reset_transaction();
    if (to != Stage::None) stage_ = to;
    return true;
  }
  if (!may_follow(stage_, to, protocol_)) {
    const Stage from = stage_;
    if (in_transaction(stage_)) reset_transaction();
    stage_ = Stage::Helo;
    if (!may_follow(stage_, to, protocol_)) {
      if (!told_out_of_order_) {
        told_out_of_order_ = true;
        log::warning("milter: {} sent {:?} out of order (after {}); ignored, as libmilter does (not logged again)",
                     peer_, letter, stage_name(from));
      }
      return false;
    }
  }
  stage_ = to;
  return true;
}

// SMFIC_OPTNEG: version, actions, protocol steps offered; we answer with
// what the scripts need (milter_mapping.cc).
bool Connection::negotiate_options(std::string_view d) {
  OptionOffer offer;
  if (!parse_optneg(d, offer)) {
    log::warning("milter: {} sent a malformed option negotiation; closing", peer_);
    return false;
  }
  caps_ = server_.runtime->capabilities();
  const Negotiation n = negotiate(*caps_, offer.actions, offer.protocol);
  actions_ = n.actions;
  protocol_ = n.protocol;
  queue(reply::kOptionNegotiation, optneg_reply(offer.version, actions_, protocol_));
  return true;
}

// The macros into the facts (client.macros and what derives from them);
// sent with the next event. Recomputed from the macros held now, so a
// macro a stage no longer sends (or a session that ended) leaves no fact.
void Connection::absorb_macros() {
  if (!state_.take_changed()) return;
  for (const std::string& name : known_macros()) {
    if (const std::string* v = state_.macro(name)) {
      facts_.attributes[name] = *v;
    } else {
      facts_.attributes.erase(name);
    }
  }
  auto macro = [&](const char* name) -> std::string {
    const std::string* v = state_.macro(name);
    return v ? *v : std::string();
  };
  facts_.tls_protocol = macro("{tls_version}");
  facts_.tls_cipher = macro("{cipher}");
  facts_.auth_user = macro("{auth_authen}");
  facts_.local_address = macro("{daemon_addr}");
  facts_.local_port = static_cast<std::uint32_t>(std::atoi(macro("{daemon_port}").c_str()));
  facts_dirty_ = true;
}

const Capabilities& Connection::caps() {
  if (!caps_) caps_ = server_.runtime->capabilities();  // an MTA that does not negotiate
  return *caps_;
}

// A step the MTA may have been told needs no reply.
void Connection::no_reply(unsigned long nr_flag) {
  if (!(protocol_ & nr_flag)) queue(reply::kContinue);
}

// A header, end of header or body packet: a refused message (too big, a
// line too long) gets its refusal where the MTA reads a reply, else at
// the end of the body.
void Connection::content_reply(unsigned long nr_flag) {
  if (state_.refusal() == Refusal::None || (protocol_ & nr_flag)) {
    no_reply(nr_flag);
    return;
  }
  answer(Decision::respond(0, refusal_reply(state_.refusal())));
}

SessionEvent Connection::stamp(SessionEvent e) {
  e.seq = ++seq_;
  e.transaction_id = transaction_id_;
  e.helo = helo_;
  if (!transaction_id_.empty()) e.sender = sender_;
  if (e.kind == EventKind::Data || e.kind == EventKind::EndOfMessage) e.recipients = recipients_;
  if (facts_dirty_) {
    e.client = facts_;
    facts_dirty_ = false;
  }
  return e;
}

void Connection::notify(SessionEvent e) {
  if (!session_) return;
  e.wants_reply = false;
  session_->post(stamp(std::move(e)));
}

// The decision for `seq`; nullopt when policyd is stopping. With
// `progress`, SMFIR_PROGRESS goes out every second of the wait.
asio::awaitable<std::optional<Decision>> Connection::decision(std::uint64_t seq, bool progress) {
  waiting_ = true;
  for (;;) {
    auto& q = box_->decisions;
    while (!q.empty() && q.front().seq < seq) q.pop_front();  // answers nobody waits for
    if (!q.empty()) {
      Decision d = q.pop_front();
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

asio::awaitable<std::optional<Decision>> Connection::ask(SessionEvent e, bool progress) {
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
void Connection::answer(const std::optional<Decision>& d, bool with_text) {
  const MilterReply r = d ? milter_reply(*d) : MilterReply{};
  if (d && r.status == Status::Continue) {
    queue(reply::kContinue);
    return;
  }
  // After a refusal the order goes back to HELO, except after RCPT and
  // unknown commands (libmilter's CT_IGNO): a RCPT after a refused MAIL is
  // out of order.
  if (stage_ != Stage::Rcpt && stage_ != Stage::Unknown) stage_ = Stage::Helo;
  if (!d) {  // policyd is stopping: never accept blind
    queue(reply::kTempfail);
    return;
  }
  if (!with_text) {
    queue(r.status == Status::Reject ? reply::kReject : reply::kTempfail);
    return;
  }
  queue(reply::kReplyCode, reply_text(r));
}

// SMFIC_CONNECT: hostname, family ('4', '6', 'L' or 'U'), port, address.
asio::awaitable<bool> Connection::on_connect(std::string_view d) {
  end_session();  // a second CONNECT on one connection starts afresh
  ConnectInfo client;
  if (!parse_connect(d, client)) {
    log::warning("milter: {} sent a malformed CONNECT; closing", peer_);
    co_return false;
  }
  facts_ = ClientFacts();
  facts_.host = std::move(client.host);
  facts_.port = client.port;
  facts_.address = std::move(client.address);
  absorb_macros();  // state_ took the CONNECT: only this session's macros are left
  facts_dirty_ = false;
  id_ = server_.session_ids.next();
  SessionStart start;
  start.session_id = id_;
  start.shape = Shape::Milter;
  // smtpe.host: the MTA's own name, its macro j, which Postfix
  // (milter_connect_macros) and Sendmail (Milter.macros.connect) send
  // before CONNECT by default. The session starts here: a j only a later
  // stage sends is client.macros.j, never smtpe.host (empty then).
  if (const std::string* j = state_.macro("j")) start.local_host = *j;
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

// CLOSE to the scripts, then the runtime session ends.
// Nothing of the session stays for the next one on this connection
// (SMFIC_QUIT_NC, a second CONNECT): its facts and message go too.
void Connection::end_session() {
  if (session_) {
    if (caps().events.has(EventKind::Close)) {
      SessionEvent e;
      e.kind = EventKind::Close;
      notify(std::move(e));
    }
    session_->close();
    session_.reset();
  }
  transaction_id_.clear();
  transactions_ = 0;
  helo_.clear();
  sender_.clear();
  recipients_.clear();
  pending_bytes_.clear();
  facts_ = ClientFacts();
  facts_dirty_ = false;
  box_->decisions.clear();
}

}  // namespace mailhook::policyd::milter
