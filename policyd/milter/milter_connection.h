// One MTA connection of the milter server (milter_adapter.cc) and its
// session: commands (milter_codec.h) become SessionEvents for the Runtime;
// decisions come back as replies and message changes. The connection runs
// on the Lua worker its session is bound to, so a command, its hook and
// its reply stay on one thread; it never blocks that thread, it waits on
// the socket or its Mailbox.
#pragma once

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "policyd/lua_runtime/runtime.h"
#include "policyd/milter/milter_adapter.h"
#include "policyd/milter/milter_codec.h"

namespace mailhook::policyd::milter {

class Connection;
struct Mailbox;

// What a connection shares with the server that accepted it: the Runtime,
// the options, and the register stop_milter walks. The server
// (milter_adapter.cc) is one of these plus its acceptor.
struct ConnectionHost {
  Runtime* runtime = nullptr;
  MilterConfig config;
  // mailhook_policyd_milter_limit_trips_total, per flag: how often each
  // --milter-* limit tripped (registered by start_milter for every flag).
  telemetry::Registry own_registry;  // when --metrics is off
  std::map<std::string, telemetry::Counter*, std::less<>> trips;
  void tripped(std::string_view flag) {
    if (auto it = trips.find(flag); it != trips.end()) it->second->add();
  }
  // MTA connections accepted and served, and open now (start_milter
  // registers them; nullptr until then).
  telemetry::Counter* connections_total = nullptr;
  telemetry::Gauge* connections_open = nullptr;
  std::atomic<bool> stopping{false};
  std::mutex mu;  // guards connections; the last one out notifies ended
  std::condition_variable ended;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `socket` already on the executor of Lua worker `worker`.
  Connection(ConnectionHost& host, std::size_t worker, asio::generic::stream_protocol::socket socket);

  // Serves the MTA until it quits or leaves, then leaves host.connections.
  asio::awaitable<void> run();

  asio::any_io_executor executor() { return socket_.get_executor(); }

  // stop_milter, on the connection's thread: one waiting on a decision
  // answers tempfail; an idle one is closed.
  void stop();

 private:
  // I/O
  asio::awaitable<std::optional<Packet>> next_packet();
  static asio::awaitable<void> watchdog(std::shared_ptr<Connection> self);
  void queue(char letter, std::string_view data = {}) { append_packet(out_, letter, data); }
  asio::awaitable<bool> flush();

  // the session
  asio::awaitable<void> serve();
  bool enter_stage(char letter);
  bool negotiate_options(std::string_view d);
  void absorb_macros();
  const Capabilities& caps();
  void no_reply(unsigned long nr_flag);
  void content_reply(unsigned long nr_flag);
  SessionEvent stamp(SessionEvent e);
  void notify(SessionEvent e);
  asio::awaitable<std::optional<Decision>> decision(std::uint64_t seq, bool progress);
  asio::awaitable<std::optional<Decision>> ask(SessionEvent e, bool progress = false);
  void answer(const std::optional<Decision>& d, bool with_text = true);
  asio::awaitable<bool> on_connect(std::string_view d);
  asio::awaitable<void> on_helo(std::string_view d);
  asio::awaitable<void> on_envelope(std::string_view d, EventKind kind, unsigned long nr_flag);
  asio::awaitable<void> on_simple(EventKind kind, const char* input, unsigned long nr_flag);
  asio::awaitable<void> on_unknown(std::string_view d);
  asio::awaitable<void> on_end_of_message();

  // transactions
  void begin_transaction();
  void reset_transaction();
  void add_message_bytes(std::string_view bytes);
  void flush_message();
  void end_session();

  ConnectionHost& server_;
  const std::size_t worker_;  // the Lua worker whose thread runs this connection
  asio::generic::stream_protocol::socket socket_;
  asio::steady_timer watchdog_;
  // When the read or write under way must have ended (--milter-timeout).
  std::chrono::steady_clock::time_point io_deadline_ = std::chrono::steady_clock::time_point::max();
  std::shared_ptr<Mailbox> box_;
  const std::string peer_;  // for the log
  bool waiting_ = false;
  bool writing_ = false;  // a write is under way (for the watchdog's log line)
  PacketReader in_;
  std::string out_;
  std::optional<Capabilities> caps_;
  unsigned long actions_ = 0;
  unsigned long protocol_ = 0;  // 0 until negotiated: every step is answered
  ConnectionState state_;  // macros and the message under way, bounded (milter_state.h)
  Stage stage_ = Stage::Init;
  bool told_out_of_order_ = false;  // the log names the first command out of order only
  ClientFacts facts_;
  bool facts_dirty_ = false;
  std::shared_ptr<Session> session_;
  std::string id_;
  std::uint64_t seq_ = 0;
  std::uint64_t transactions_ = 0;
  std::string transaction_id_;
  std::string helo_;
  std::string pending_bytes_;
};

}  // namespace mailhook::policyd::milter
