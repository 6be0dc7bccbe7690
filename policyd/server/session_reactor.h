// One gRPC bidi stream = one SMTP session. The reactor turns FrontMessages
// into Runtime calls and the runtime's answers into PolicyMessages. It only
// dispatches: never blocks, never touches Lua, one read and one write in
// flight, at most --max-pending-events events queued on the worker (then
// it stops reading: HTTP/2 flow control holds the peer), its lifetime ends
// in OnDone.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>

#include "mailcore/telemetry/metrics.h"
#include "mailcore/util/write_queue.h"
#include "mailhook/v1/session.grpc.pb.h"
#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd {

class SessionCounter;

class SessionReactor final : public grpc::ServerBidiReactor<v1::FrontMessage, v1::PolicyMessage> {
 public:
  SessionReactor(Runtime& runtime, SessionCounter& counter, std::size_t max_pending_events,
                 telemetry::Counter& paused_streams);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // Called by the Outbox on a worker thread: queue a message for the front.
  void enqueue(v1::PolicyMessage message);
  // Called by the Outbox on a worker thread: one posted event was handled.
  void event_handled();

 private:
  class Outbox;
  void start_session(const v1::SessionStart& start);
  void end_reads();
  // Under mu_: Finish when reads ended and every queued write went out.
  void maybe_finish_locked();

  Runtime& runtime_;
  SessionCounter& counter_;
  v1::FrontMessage in_;
  std::shared_ptr<Session> session_;
  std::shared_ptr<Outbox> outbox_;
  std::string session_id_;

  std::mutex mu_;
  WriteQueue<v1::PolicyMessage> out_;
  bool reads_done_ = false;
  bool finished_ = false;
  // Flow control: events posted and not yet handled; reading stops at the
  // limit and resumes when the worker catches up.
  const std::size_t max_pending_;
  telemetry::Counter& paused_streams_;
  std::size_t pending_ = 0;
  bool paused_ = false;       // no read in flight because of the limit
  bool pause_logged_ = false;
  bool cancelled_ = false;
};

// Counts open streams so SIGTERM can report what it waits for.
class SessionCounter {
 public:
  void up() { std::lock_guard l(mu_); ++open_; }
  void down() { std::lock_guard l(mu_); --open_; }
  long open() { std::lock_guard l(mu_); return open_; }

 private:
  std::mutex mu_;
  long open_ = 0;
};

}  // namespace mailhook::policyd
