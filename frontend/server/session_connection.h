// The Connection behind serve_connection(): one SMTP session as a C++20
// coroutine. Its methods live in connection.cc (socket I/O, the command
// loop), connection_policy.cc (the policy conversation: open, ask, the
// decision rules), connection_message.cc (DATA and delivery) and, for
// STARTTLS, AUTH and XCLIENT, connection_extensions.cc. Private to
// frontend/server; knows no Lua and no gRPC; never blocks its I/O thread.
#pragma once

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "frontend/delivery/envelope.h"
#include "frontend/policy_client/policy_conversation.h"
#include "frontend/server/connection.h"
#include "frontend/server/tls_stream.h"
#include "mailcore/session/reply_rules.h"
#include "mailcore/session/session_machine.h"

namespace mailhook::front::detail {

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
    if (drain_id_ != 0) ctx_.drain.remove(drain_id_);
  }

  asio::awaitable<void> run();

 private:
  enum class Read : std::uint8_t { Ok, Closed, TimedOut, Draining };

  asio::awaitable<Read> read_more(std::chrono::seconds timeout);
  asio::awaitable<Read> wait_socket(tcp::socket::wait_type what);
  // The wait a TLS step asked for (Read or Write).
  asio::awaitable<Read> wait_for_tls(TlsStream::Want w) {
    return wait_socket(w == TlsStream::Want::Read ? tcp::socket::wait_read : tcp::socket::wait_write);
  }
  asio::awaitable<void> flush();
  void queue_reply(const Reply& r) {
    ctx_.metrics.reply(r.code);
    out_ += r.wire();
  }
  asio::awaitable<bool> open_policy();
  // The policy's decision on an event (or the failure mode's).
  asio::awaitable<Decision> ask(SessionEvent event) { return policy_->ask(std::move(event)); }
  void notify(SessionEvent event) {
    if (policy_) policy_->notify(std::move(event));
  }
  // session::choose_reply, with the warning for an invalid policy reply.
  session::ChosenReply choose(const Decision& d, const Reply& fallback, bool answers_data = false);
  void log_invalid(const session::ChosenReply& c);
  void log_limits(const Decision& d);
  asio::awaitable<bool> command_loop();
  asio::awaitable<bool> on_command(std::string command);
  asio::awaitable<bool> start_tls();
  asio::awaitable<std::optional<std::string>> read_line();
  asio::awaitable<Reply> authenticate(const std::string& line, const std::string& argument);  // counts the outcome
  asio::awaitable<Reply> authenticate_exchange(const std::string& line, const std::string& argument);
  asio::awaitable<Reply> xclient(const std::string& line, const std::string& argument);
  asio::awaitable<bool> data_phase();
  asio::awaitable<Reply> deliver(Envelope& envelope, std::string& message, const Decision& eom);
  // The refusal line (docs/logging.md) of a reply >= 400 that a script, a
  // limit or a failure decided; `step` is the command refused, if any.
  std::string client_token() const;
  void log_refusal(const session::Step* step, std::string_view hook, std::string_view script, const Reply& r,
                   std::string_view limit = {});
  // The id a MAIL command would start; counted once the MAIL is accepted.
  std::string next_transaction_id() const { return id_ + "T" + std::to_string(transactions_ + 1); }

  tcp::socket socket_;
  FrontContext& ctx_;
  asio::steady_timer timer_;
  session::SessionMachine machine_;
  std::optional<PolicyConversation> policy_;  // from open_policy() on
  std::unique_ptr<TlsStream> tls_;  // after STARTTLS
  ClientFacts facts_;
  bool wants_message_ = false;
  std::string id_;
  std::string address_;
  std::uint32_t port_ = 0;
  std::string in_;
  std::string out_;
  std::uint64_t drain_id_ = 0;
  bool draining_ = false;
  // wait_socket's: which wait the timer was armed for, whether it ended
  // it, whether a read is waiting (the drain wakes it), and a token the
  // timer's handler checks before touching *this.
  std::uint64_t wait_generation_ = 0;
  bool timer_ended_wait_ = false;
  bool waiting_read_ = false;
  bool waiting_write_ = false;  // a reply waits for the client to read
  bool write_failed_ = false;   // a reply could not be written: the session ends
  std::shared_ptr<void> alive_ = std::make_shared<char>(0);
  int transactions_ = 0;
  int accepted_ = 0;
  std::string end_reason_ = "quit";
};

}  // namespace mailhook::front::detail
