// The per-stream reactor: FrontMessage -> Runtime, Decision -> PolicyMessage.
// The Outbox is what the runtime holds: it outlives the reactor safely, so
// a decision that arrives after the stream ended is dropped, not written
// to freed memory.
#include "policyd/server/session_reactor.h"

#include "mailcore/telemetry/log.h"
#include "mailcore/wire/convert.h"

namespace mailhook::policyd {
namespace {

// The front's session id as a log field: printable ASCII kept, any other
// byte as \xNN, so a peer cannot break or forge log lines.
std::string log_safe(std::string_view v) {
  std::string out;
  for (const unsigned char c : v.substr(0, 128)) {
    if (c >= 0x21 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out;
}

}  // namespace

class SessionReactor::Outbox final : public SessionObserver {
 public:
  explicit Outbox(SessionReactor* r) : reactor_(r) {}

  void opened(Capabilities capabilities, Decision connect) override {
    v1::PolicyMessage m;
    auto* o = m.mutable_opened();
    wire::to_proto(capabilities, o->mutable_capabilities());
    wire::to_proto(connect, o->mutable_decision());
    deliver(std::move(m));
  }

  void decided(Decision decision) override {
    v1::PolicyMessage m;
    wire::to_proto(decision, m.mutable_decision());
    deliver(std::move(m));
  }

  void handled() override {
    std::lock_guard l(mu_);
    if (reactor_) reactor_->event_handled();
  }

  void detach() {
    std::lock_guard l(mu_);
    reactor_ = nullptr;
  }

 private:
  void deliver(v1::PolicyMessage m) {
    std::lock_guard l(mu_);
    if (reactor_) reactor_->enqueue(std::move(m));
  }

  std::mutex mu_;
  SessionReactor* reactor_;
};

SessionReactor::SessionReactor(Runtime& runtime, SessionCounter& counter, std::size_t max_pending_events,
                               telemetry::Counter& paused_streams)
    : runtime_(runtime),
      counter_(counter),
      outbox_(std::make_shared<Outbox>(this)),
      max_pending_(max_pending_events),
      paused_streams_(paused_streams) {
  counter_.up();
  StartRead(&in_);
}

void SessionReactor::OnReadDone(bool ok) {
  if (!ok) {  // the front half-closed or the stream broke
    end_reads();
    return;
  }
  switch (in_.kind_case()) {
    case v1::FrontMessage::kStart:
      if (session_) {
        log::warning("bug: session={} second SessionStart on one stream; ignored", log_safe(session_id_));
      } else {
        start_session(in_.start());
      }
      break;
    case v1::FrontMessage::kEvent:
      if (!session_) {
        log::warning("stream sent an event before SessionStart; closing it");
        end_reads();
        return;
      }
      {
        std::lock_guard l(mu_);
        ++pending_;
      }
      session_->post(wire::from_proto(std::move(*in_.mutable_event())));
      break;
    case v1::FrontMessage::KIND_NOT_SET:
      break;
  }
  {
    std::lock_guard l(mu_);
    if (pending_ >= max_pending_) {
      // The worker is behind: read no more until it catches up, so a peer
      // that only writes is held by flow control, not by our memory.
      paused_ = true;
      if (!pause_logged_) {
        pause_logged_ = true;
        paused_streams_.add();
        log::info("session={} {} events pending (--max-pending-events); reading paused", log_safe(session_id_),
                  pending_);
      }
      return;
    }
  }
  StartRead(&in_);
}

void SessionReactor::event_handled() {
  {
    std::lock_guard l(mu_);
    if (pending_ > 0) --pending_;
    if (!paused_ || pending_ >= max_pending_ || reads_done_ || cancelled_) return;
    paused_ = false;
  }
  StartRead(&in_);  // resume: the worker is below the limit again
}

void SessionReactor::start_session(const v1::SessionStart& start) {
  session_id_ = start.session_id();
  session_ = runtime_.open(wire::from_proto(start), outbox_);
}

void SessionReactor::end_reads() {
  if (session_) session_->close();
  std::lock_guard l(mu_);
  reads_done_ = true;
  maybe_finish_locked();
}

void SessionReactor::enqueue(v1::PolicyMessage message) {
  std::lock_guard l(mu_);
  if (reads_done_ || finished_) return;  // nobody reads it any more
  if (v1::PolicyMessage* next = out_.offer(std::move(message))) StartWrite(next);
}

void SessionReactor::OnWriteDone(bool ok) {
  std::lock_guard l(mu_);
  if (!ok) {  // the stream broke; reads will end too
    out_.drop();
    return;
  }
  if (v1::PolicyMessage* next = out_.done()) {
    StartWrite(next);
    return;
  }
  maybe_finish_locked();
}

void SessionReactor::maybe_finish_locked() {
  if (finished_ || out_.writing() || !reads_done_) return;
  finished_ = true;
  Finish(grpc::Status::OK);
}

void SessionReactor::OnCancel() {
  // Reads and writes in flight complete with ok=false; OnDone follows.
  // With reading paused no read is in flight: end the reads here.
  bool paused = false;
  {
    std::lock_guard l(mu_);
    cancelled_ = true;
    paused = paused_;
    paused_ = false;
  }
  if (paused) end_reads();
}

void SessionReactor::OnDone() {
  outbox_->detach();  // the session was closed when reads ended
  counter_.down();
  delete this;
}

}  // namespace mailhook::policyd
