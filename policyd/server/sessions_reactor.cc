// The Sessions stream: FrontTagged -> one runtime Session per tag, and the
// answers of all of them -> PolicyFrames, batched: whatever was queued
// while a write was in flight goes out in the next one. The worker that
// answers writes itself when the stream's writer is idle (no extra hop).
// Session state the workers touch lives in Core/Slot behind Core's mutex,
// so an answer arriving after the stream ended is dropped, not written to
// freed memory. The mutex guards bookkeeping only: protobuf conversion and
// gRPC's StartWrite happen outside it, so two workers answering sessions
// of one stream do not queue behind each other's syscalls.
#include "policyd/server/sessions_reactor.h"

#include <algorithm>
#include <asio/post.hpp>
#include <vector>

#include "mailcore/telemetry/log.h"
#include "mailcore/wire/convert.h"
#include "policyd/server/session_reactor.h"

namespace mailhook::policyd {

struct SessionsReactor::Core {
  std::mutex mu;
  SessionsReactor* reactor;  // nullptr once OnDone ran
  v1::PolicyFrame sending;   // the write in flight (gRPC holds its address)
  v1::PolicyFrame pending;   // what the next write carries
  bool dirty = false;        // `pending` has something to send
  bool writing = false;
  // Per worker: its flush() is on its way, so `pending` waits for it. Per
  // worker, so a worker busy in a hook never holds another's answers.
  std::vector<char> flush_posted;
  bool flushes_posted() const { return std::find(flush_posted.begin(), flush_posted.end(), 1) != flush_posted.end(); }
  bool reads_done = false;
  bool finished = false;
  bool drained = false;
};

// One session of the stream. The counters are the credit of the
// flow-control window (session.proto header); all under Core::mu.
struct SessionsReactor::Slot {
  std::uint64_t id = 0;
  std::string log_id;  // SessionStart.session_id, escaped
  std::shared_ptr<Session> session;
  std::size_t worker = 0;              // the session's worker (its answers are written from there)
  asio::any_io_executor worker_executor;
  std::size_t pending = 0;      // events posted, not yet handled
  std::uint64_t handled = 0;    // events handled (what the credit says)
  std::uint64_t reported = 0;   // `handled` as last sent to the front
  std::uint64_t decided = 0;    // handled() calls still to come for decided events
  bool gone = false;            // ended or closed: answers are dropped
};

class SessionsReactor::Outbox final : public SessionObserver {
 public:
  Outbox(std::shared_ptr<Core> core, std::shared_ptr<Slot> slot, std::size_t window)
      : core_(std::move(core)), slot_(std::move(slot)), credit_step_(std::max<std::size_t>(1, window / 2)) {}

  void opened(Capabilities capabilities, Decision connect) override {
    v1::PolicyTagged m;
    auto* o = m.mutable_opened();
    wire::to_proto(capabilities, o->mutable_capabilities());
    wire::to_proto(connect, o->mutable_decision());
    {
      std::lock_guard l(core_->mu);
      if (!core_->reactor || slot_->gone) return;
      if (!send_locked(std::move(m))) return;
    }
    post_flush();
  }

  // The decision counts the event as handled at once, so the credit it
  // carries is exact; the handled() call that follows only balances.
  void decided(Decision decision) override {
    v1::PolicyTagged m;
    wire::to_proto(decision, m.mutable_decision());
    {
      std::lock_guard l(core_->mu);
      count_handled_locked();
      ++slot_->decided;
      if (!core_->reactor || slot_->gone) return;
      if (!send_locked(std::move(m))) return;
    }
    post_flush();
  }

  void handled() override {
    {
      std::lock_guard l(core_->mu);
      if (slot_->decided > 0) {
        --slot_->decided;
        return;
      }
      count_handled_locked();
      if (!core_->reactor || slot_->gone) return;
      // Credit-only: after half a window, so the front never waits for it
      // (it blocks only with a whole window outstanding) and chunks cost
      // one small message per half window, not one each.
      if (slot_->handled - slot_->reported < credit_step_ || !send_locked(v1::PolicyTagged())) return;
    }
    post_flush();
  }

 private:
  void count_handled_locked() {
    if (slot_->pending > 0) --slot_->pending;
    ++slot_->handled;
  }
  // Queues `m` for the stream's next write; true when the caller must
  // post_flush() (after unlocking): no flush is on its way yet.
  bool send_locked(v1::PolicyTagged m) {
    m.set_session(slot_->id);
    m.set_handled(slot_->handled);
    slot_->reported = slot_->handled;
    if (!core_->reactor->queue_locked(std::move(m))) return false;
    std::vector<char>& posted = core_->flush_posted;
    if (posted.size() <= slot_->worker) posted.resize(slot_->worker + 1, 0);
    if (posted[slot_->worker]) return false;
    posted[slot_->worker] = 1;
    return true;
  }
  // On the worker (the observer's calls come from there): the write
  // starts once the handlers it has ready ran, so the answers of every
  // session it serves that decides meanwhile go in one frame.
  void post_flush() {
    asio::post(slot_->worker_executor,
               [core = core_, worker = slot_->worker] { SessionsReactor::flush(core, worker); });
  }

  std::shared_ptr<Core> core_;
  std::shared_ptr<Slot> slot_;
  const std::size_t credit_step_;
};

SessionsReactor::SessionsReactor(Runtime& runtime, SessionCounter& counter, SessionsRegistry& registry,
                                 SessionsLimits limits, telemetry::Counter& ended_sessions, std::string peer)
    : runtime_(runtime),
      counter_(counter),
      registry_(registry),
      limits_(limits),
      ended_sessions_(ended_sessions),
      peer_(log::escape(peer)),
      core_(std::make_shared<Core>()) {
  core_->reactor = this;
  registry_.add(this);
  bool write = false;
  {
    // The first frame: the limits the front paces itself by.
    std::lock_guard l(core_->mu);
    auto* s = core_->pending.mutable_limits();
    s->set_max_pending_events(static_cast<std::uint32_t>(limits_.max_pending_events));
    s->set_max_sessions(static_cast<std::uint32_t>(limits_.max_sessions));
    s->set_max_frame_bytes(limits_.max_frame_bytes);
    core_->dirty = true;
    write = take_write_locked();
  }
  if (write) start_write();
  StartRead(&in_);
}

void SessionsReactor::OnReadDone(bool ok) {
  if (!ok) {  // the front half-closed or the stream broke
    end_reads();
    return;
  }
  if (limits_.max_age.count() > 0 && std::chrono::steady_clock::now() - born_ >= limits_.max_age) {
    // Checked when the front sends (a stream nobody uses needs no rebalancing).
    bool write = false;
    {
      std::lock_guard l(core_->mu);
      write = drain_locked("max-connection-age");
    }
    if (write) start_write();
  }
  for (v1::FrontTagged& m : *in_.mutable_messages()) handle(m);
  in_.Clear();
  StartRead(&in_);
}

void SessionsReactor::handle(v1::FrontTagged& m) {
  const std::uint64_t id = m.session();
  switch (m.kind_case()) {
    case v1::FrontTagged::kStart:
      start_session(id, *m.mutable_start());
      return;
    case v1::FrontTagged::kEvent: {
      const auto it = sessions_.find(id);
      if (it == sessions_.end()) return;  // ended by policyd before the front knew: dropped
      Slot& slot = *it->second;
      {
        std::lock_guard l(core_->mu);
        if (slot.pending < limits_.max_pending_events) {
          ++slot.pending;
        } else {
          slot.gone = true;  // nothing of it is queued any more
        }
      }
      if (slot.gone) {
        end_session(id, fmt::format("over --max-pending-events ({})", limits_.max_pending_events));
        return;
      }
      slot.session->post(wire::from_proto(std::move(*m.mutable_event())));
      return;
    }
    case v1::FrontTagged::kEnd: {
      const auto it = sessions_.find(id);
      if (it == sessions_.end()) return;
      const std::shared_ptr<Slot> slot = std::move(it->second);
      sessions_.erase(it);
      {
        std::lock_guard l(core_->mu);
        slot->gone = true;
      }
      slot->session->close();
      slot->session.reset();  // the Outbox holds the Slot: no cycle through the runtime
      counter_.down();
      return;
    }
    case v1::FrontTagged::KIND_NOT_SET:
      return;
  }
}

void SessionsReactor::start_session(std::uint64_t id, v1::SessionStart& start) {
  if (sessions_.count(id)) {
    // A front bug: both are given up, so neither gets the other's answers.
    end_session(id, "session id already open");
    return;
  }
  if (sessions_.size() >= limits_.max_sessions) {
    ended_sessions_.add();
    if (!limit_logged_) {
      limit_logged_ = true;
      log::info("session={} refused: {} sessions open on its stream (--max-sessions-per-stream); further ones "
                "counted in mailhook_policyd_grpc_sessions_ended_total",
                log::escape(start.session_id()), sessions_.size());
    }
    v1::PolicyTagged m;
    m.set_session(id);
    m.mutable_ended()->set_reason(fmt::format("over --max-sessions-per-stream ({})", limits_.max_sessions));
    bool write = false;
    {
      std::lock_guard l(core_->mu);
      write = append_locked(std::move(m));
    }
    if (write) start_write();
    return;
  }
  auto slot = std::make_shared<Slot>();
  slot->id = id;
  slot->log_id = log::escape(start.session_id());
  const std::size_t worker = runtime_.least_busy_worker();
  slot->worker = worker;
  slot->worker_executor = runtime_.worker_executor(worker);
  auto outbox = std::make_shared<Outbox>(core_, slot, limits_.max_pending_events);
  sessions_.emplace(id, slot);
  ++opened_;
  counter_.up();
  slot->session = runtime_.open_on(worker, wire::from_proto(std::move(start)), std::move(outbox));
}

void SessionsReactor::end_session(std::uint64_t id, const std::string& reason) {
  const auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  const std::shared_ptr<Slot> slot = std::move(it->second);
  sessions_.erase(it);
  bool write = false;
  {
    std::lock_guard l(core_->mu);
    slot->gone = true;
    v1::PolicyTagged m;
    m.set_session(id);
    m.set_handled(slot->handled);
    m.mutable_ended()->set_reason(reason);
    write = append_locked(std::move(m));
  }
  if (write) start_write();
  slot->session->close();
  slot->session.reset();  // the Outbox holds the Slot: no cycle through the runtime
  counter_.down();
  ended_sessions_.add();
  log::info("session={} ended by policyd: {}", slot->log_id, reason);
}

void SessionsReactor::end_reads() {
  // How many sessions a front put on one stream: it keeps one per replica
  // busy and the others standing by (frontend/policy_client/session_mux.cc).
  log::debug("sessions stream from {} ended after {}s: {} sessions opened on it", peer_,
             std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - born_).count(),
             opened_);
  for (auto& [id, slot] : sessions_) {
    {
      std::lock_guard l(core_->mu);
      slot->gone = true;
    }
    slot->session->close();
    slot->session.reset();  // the Outbox holds the Slot: no cycle through the runtime
    counter_.down();
  }
  sessions_.clear();
  std::lock_guard l(core_->mu);
  core_->reads_done = true;
  maybe_finish_locked();
}

bool SessionsReactor::append_locked(v1::PolicyTagged message) {
  // False while a write is in flight: it goes with the next.
  return queue_locked(std::move(message)) && take_write_locked();
}

bool SessionsReactor::queue_locked(v1::PolicyTagged message) {
  if (core_->reads_done || core_->finished) return false;  // nobody reads it any more
  *core_->pending.add_messages() = std::move(message);
  core_->dirty = true;
  return true;
}

void SessionsReactor::flush(const std::shared_ptr<Core>& core, std::size_t worker) {
  SessionsReactor* writer = nullptr;
  {
    std::lock_guard l(core->mu);
    core->flush_posted[worker] = 0;
    if (!core->reactor || core->finished) return;
    if (core->reactor->take_write_locked()) {
      writer = core->reactor;
    } else {
      core->reactor->maybe_finish_locked();
    }
  }
  if (writer) writer->start_write();  // alive: Finish waits for this write's OnWriteDone
}

bool SessionsReactor::take_write_locked() {
  if (core_->writing || !core_->dirty) return false;
  core_->writing = true;
  core_->sending.Clear();
  core_->sending.Swap(&core_->pending);
  core_->dirty = false;
  return true;
}

void SessionsReactor::start_write() { StartWrite(&core_->sending); }

void SessionsReactor::drain(const std::string& reason) {
  bool write = false;
  {
    std::lock_guard l(core_->mu);
    write = drain_locked(reason);
  }
  if (write) start_write();
}

bool SessionsReactor::drain_locked(const std::string& reason) {
  if (core_->drained || core_->reads_done || core_->finished) return false;
  core_->drained = true;
  log::info("sessions stream drained ({}): the front opens its next sessions elsewhere", reason);
  core_->pending.mutable_drain()->set_reason(reason);
  core_->dirty = true;
  return take_write_locked();
}

void SessionsReactor::OnWriteDone(bool ok) {
  bool write = false;
  {
    std::lock_guard l(core_->mu);
    core_->writing = false;
    if (!ok) {  // the stream broke; reads end too
      core_->pending.Clear();
      core_->dirty = false;
      maybe_finish_locked();
      return;
    }
    write = take_write_locked();
    if (!write) maybe_finish_locked();
  }
  if (write) start_write();
}

void SessionsReactor::maybe_finish_locked() {
  if (core_->finished || core_->writing || core_->flushes_posted() || !core_->reads_done) return;
  core_->finished = true;
  Finish(grpc::Status::OK);
}

void SessionsReactor::OnDone() {
  registry_.remove(this);  // no drain() after this
  {
    std::lock_guard l(core_->mu);
    core_->reactor = nullptr;
  }
  delete this;
}

}  // namespace mailhook::policyd
