// MuxSession: one SMTP session's policy conversation on a shared Sessions
// stream of a SessionMux (or, when policyd has no Sessions RPC, on the
// per-call link). Called from the connection's thread only; never blocks
// it, never decides a reply (the connection does, with reply_rules.h).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "frontend/policy_client/policy_session.h"
#include "frontend/policy_client/session_mux.h"
#include "mailhook/v1/session.grpc.pb.h"

namespace mailhook::front {

class MuxSession final : public PolicySession {
 public:
  MuxSession(SessionMux& mux, asio::any_io_executor executor) : mux_(mux), executor_(std::move(executor)) {}
  ~MuxSession() override { abort(); }

  asio::awaitable<PolicyOpening> open(SessionStart start, PolicyClock::time_point deadline) override;
  asio::awaitable<PolicyAnswer> ask(SessionEvent event, PolicyClock::time_point deadline) override;
  void notify(SessionEvent event) override;
  bool batches() const override { return inbox_ && !per_call_ && fault_ == PolicyFault::None; }
  void send_ahead(std::vector<SessionEvent> events) override;
  asio::awaitable<PolicyAnswer> decision(std::uint64_t seq, PolicyClock::time_point deadline) override;
  void close() override;
  void abort() override;

 private:
  static v1::FrontTagged end_message();
  // Why there is no answer: policyd ended the session, the stream broke,
  // or --policy-timeout passed. Never holds client bytes.
  std::string failure_text(const std::optional<v1::PolicyTagged>& m);

  SessionMux& mux_;
  asio::any_io_executor executor_;
  std::shared_ptr<SessionMux::Inbox> inbox_;
  std::unique_ptr<PolicySession> per_call_;  // policyd has no Sessions: all goes through it
  PolicyFault fault_ = PolicyFault::None;  // once set, the session is finished
  std::string failure_;
  std::string broke_;  // why the last stream tried broke
  bool closed_ = false;
};

}  // namespace mailhook::front
