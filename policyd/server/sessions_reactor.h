// One gRPC Sessions stream = many SMTP sessions, tagged by the front's id
// (proto/mailhook/v1/session.proto, "Sessions"). The reactor maps each
// tag to its own runtime Session and batches the answers of all of them
// into one PolicyFrame per write. It only dispatches: never blocks, never
// touches Lua, always reads (bounds hold per session: a session over its
// window is ended, never the stream paused), its lifetime ends in OnDone.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "mailcore/telemetry/metrics.h"
#include "mailhook/v1/session.grpc.pb.h"
#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd {

class SessionCounter;
class SessionsRegistry;

// What a Sessions stream is held to (the daemon's flags, whose defaults in
// policyd/config.h are the only ones; PolicyServer::start fills these).
struct SessionsLimits {
  std::size_t max_pending_events{};       // per session: --max-pending-events
  std::size_t max_sessions{};             // per stream: --max-sessions-per-stream
  std::size_t max_frame_bytes = 4 << 20;  // gRPC's receive cap
  std::chrono::seconds max_age{};         // --max-connection-age: then Drain; 0: never
};

class SessionsReactor final : public grpc::ServerBidiReactor<v1::FrontFrame, v1::PolicyFrame> {
 public:
  // `peer`: the front's address as gRPC names it, for the debug line at
  // the stream's end.
  SessionsReactor(Runtime& runtime, SessionCounter& counter, SessionsRegistry& registry, SessionsLimits limits,
                  telemetry::Counter& ended_sessions, std::string peer);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

  // Any thread: tell the front to open no more sessions here (once).
  void drain(const std::string& reason);

 private:
  struct Core;
  struct Slot;
  class Outbox;
  friend class Outbox;

  void handle(v1::FrontTagged& message);
  void start_session(std::uint64_t id, v1::SessionStart& start);
  // policyd gives the session up: closed in the runtime, `ended` sent.
  void end_session(std::uint64_t id, const std::string& reason);
  void end_reads();
  // Under core_->mu: queue one tagged message (or the Drain) for the next
  // write. True when the writer was idle: the caller then owns the write
  // and calls start_write() once it has let go of the mutex, so no thread
  // waits on the mutex while gRPC takes the frame (a sendmsg, often).
  [[nodiscard]] bool append_locked(v1::PolicyTagged message);
  // Under core_->mu: queue it for the next write without starting one
  // (a worker's Outbox, which then posts flush()); false once nobody reads.
  [[nodiscard]] bool queue_locked(v1::PolicyTagged message);
  // On a worker, not under core->mu: what was queued goes in one write,
  // unless one is in flight (its OnWriteDone takes it).
  static void flush(const std::shared_ptr<Core>& core, std::size_t worker);
  [[nodiscard]] bool drain_locked(const std::string& reason);
  // Under core_->mu: `pending` becomes the write in flight, if the writer is
  // idle and there is something; true when the caller must start_write().
  [[nodiscard]] bool take_write_locked();
  // Not under core_->mu: writes `sending` (what take_write_locked() took).
  // The reactor lives until that write's OnWriteDone: Finish waits for it.
  void start_write();
  void maybe_finish_locked();

  Runtime& runtime_;
  SessionCounter& counter_;
  SessionsRegistry& registry_;
  const SessionsLimits limits_;
  telemetry::Counter& ended_sessions_;
  const std::chrono::steady_clock::time_point born_ = std::chrono::steady_clock::now();
  v1::FrontFrame in_;
  // The reader's own: OnReadDone calls never overlap.
  std::unordered_map<std::uint64_t, std::shared_ptr<Slot>> sessions_;
  bool limit_logged_ = false;
  const std::string peer_;     // escaped
  std::uint64_t opened_ = 0;  // sessions opened here (the debug line at the end)

  // Shared with every session's Outbox (worker threads).
  std::shared_ptr<Core> core_;
};

// The live Sessions streams, so SIGTERM can send each a Drain.
class SessionsRegistry {
 public:
  void add(SessionsReactor* r) { std::lock_guard l(mu_); live_.insert(r); }
  void remove(SessionsReactor* r) { std::lock_guard l(mu_); live_.erase(r); }
  void drain_all(const std::string& reason) {
    std::lock_guard l(mu_);
    for (SessionsReactor* r : live_) r->drain(reason);
  }

 private:
  std::mutex mu_;
  std::set<SessionsReactor*> live_;
};

}  // namespace mailhook::policyd
