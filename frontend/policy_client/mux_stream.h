// SessionMux's private parts (policy_client only): Stream is the gRPC
// reactor of one shared Sessions stream; it batches what its sessions queue
// into one FrontFrame per write and routes policyd's tagged answers to each
// session's Inbox. An Inbox queues the answers for its connection coroutine
// (woken through its executor) and holds the session's events past the
// credit window until policyd's `handled` lets them go, so one slow session
// never stalls the stream. Lock order: Inbox before Stream; a reactor
// callback holds neither when it calls the other.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "frontend/policy_client/session_mux.h"
#include "mailcore/wire/stream_limits.h"
#include "mailcore/util/fifo.h"
#include "mailhook/v1/session.grpc.pb.h"

namespace mailhook::front {

class SessionMux::Stream final : public grpc::ClientBidiReactor<v1::FrontFrame, v1::PolicyFrame>,
                                 public std::enable_shared_from_this<Stream> {
 public:
  using Clock = std::chrono::steady_clock;
  // A frame is cut below policyd's 4 MiB receive cap (StreamLimits).
  static constexpr std::size_t kFrameBytes = 1 << 20;

  explicit Stream(v1::Policy::Stub& stub) : stub_(stub) {}

  void start() {
    self_ = shared_from_this();
    stub_.async()->Sessions(&context_, this);
    // Writes and the half-close start from the connections' threads, not
    // only from reactions: the hold keeps OnDone away until the read
    // failed (OnReadDone(false)), after which none starts (ended_).
    AddHold();
    StartRead(&in_);
    StartCall();
  }

  // A new session's id on this stream, or 0 when it takes no more.
  std::uint64_t attach(std::shared_ptr<Inbox> inbox) {
    std::lock_guard l(mu_);
    if (!usable_locked()) return 0;
    const std::uint64_t id = ++last_id_;
    inboxes_.emplace(id, std::move(inbox));
    return id;
  }
  void detach(std::uint64_t id) {
    std::lock_guard l(mu_);
    inboxes_.erase(id);
    maybe_half_close_locked();
  }
  // Queues `batch`, all of it in one frame when it fits kFrameBytes (a
  // pipelined client's events go in one write). The write starts once the
  // handlers `executor`'s thread has ready ran (a post, not a timer), so
  // what the sessions an io thread serves in one round ask goes in one
  // frame: fewer writes, reads and callbacks at both ends.
  void send(std::vector<v1::FrontTagged> batch, const asio::any_io_executor& executor) {
    std::lock_guard l(mu_);
    if (ended_ || write_failed_ || half_closed_) return;
    for (v1::FrontTagged& m : batch) {
      const std::size_t size = m.ByteSizeLong();
      if (frames_.empty() || (frame_bytes_ + size > kFrameBytes && frames_.back().messages_size() > 0)) {
        frames_.emplace_back();
        frame_bytes_ = 0;
      }
      *frames_.back().add_messages() = std::move(m);
      frame_bytes_ += size;
    }
    if (!writing_ && !flush_posted_) {
      flush_posted_ = true;
      asio::post(executor, [self = shared_from_this()] { self->flush(); });
    }
  }
  bool usable(Clock::time_point now, std::chrono::seconds age) {
    std::lock_guard l(mu_);
    if (age.count() > 0 && now - born_ >= age) retiring_ = true;
    return usable_locked();
  }
  // The replica this stream reached (gRPC's peer, "ipv4:10.0.0.7:7890"),
  // learnt from policyd's first frame; nullptr until then. Set once, so
  // it is read without the lock. Any thread.
  const std::string* peer() const { return peer_known_.load(std::memory_order_acquire) ? &peer_ : nullptr; }
  // Takes no new session; half-closes when its last one ended.
  void retire() {
    std::lock_guard l(mu_);
    retiring_ = true;
    maybe_half_close_locked();
  }
  void cancel() { context_.TryCancel(); }
  // Why the call ended (gRPC's status in words); "" while it runs.
  std::string failure() {
    std::lock_guard l(mu_);
    return failure_;
  }
  std::size_t window() {
    std::lock_guard l(mu_);
    return window_;
  }
  // policyd has no Sessions RPC (an older one): the per-call link serves.
  bool unimplemented() {
    std::lock_guard l(mu_);
    return unimplemented_;
  }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnWritesDoneDone(bool) override {}
  void OnDone(const grpc::Status& status) override;

 private:
  bool usable_locked() const {
    return !ended_ && !drained_ && !retiring_ && !half_closed_ && inboxes_.size() < max_sessions_;
  }
  void flush() {
    std::lock_guard l(mu_);
    flush_posted_ = false;
    if (ended_ || write_failed_ || half_closed_ || writing_) return;
    write_next_locked();
    if (!writing_) maybe_half_close_locked();
  }
  void write_next_locked() {
    if (frames_.empty() || frames_.front().messages_size() == 0) return;
    sending_ = std::move(frames_.front());
    frames_.pop_front();
    if (frames_.empty()) frame_bytes_ = 0;
    writing_ = true;
    StartWrite(&sending_);
  }
  void maybe_half_close_locked() {
    if ((drained_ || retiring_) && inboxes_.empty() && !writing_ && frames_.empty() && !half_closed_ && !ended_ &&
        !write_failed_) {
      half_closed_ = true;
      StartWritesDone();
    }
  }

  v1::Policy::Stub& stub_;
  grpc::ClientContext context_;
  const Clock::time_point born_ = Clock::now();
  v1::PolicyFrame in_;
  v1::FrontFrame sending_;
  std::shared_ptr<Stream> self_;  // held until OnDone
  std::string peer_;                     // written once, by the first OnReadDone
  std::atomic<bool> peer_known_{false};  // then set (release)

  std::mutex mu_;
  std::deque<v1::FrontFrame> frames_;  // waiting; the back one fills
  std::size_t frame_bytes_ = 0;
  std::unordered_map<std::uint64_t, std::shared_ptr<Inbox>> inboxes_;
  std::uint64_t last_id_ = 0;
  // policyd's defaults until its StreamLimits come.
  std::size_t window_ = wire::StreamLimitDefaults::max_pending_events;
  std::size_t max_sessions_ = wire::StreamLimitDefaults::max_sessions_per_stream;
  bool writing_ = false;
  bool flush_posted_ = false;  // a flush() is on its way
  bool write_failed_ = false;  // OnDone follows with the status
  bool ended_ = false;         // the read failed (or OnDone ran): the call is ending, the hold is gone
  std::string failure_;
  bool unimplemented_ = false;
  bool drained_ = false;
  bool retiring_ = false;
  bool half_closed_ = false;
};

class SessionMux::Inbox final : public std::enable_shared_from_this<Inbox> {
 public:
  using Clock = std::chrono::steady_clock;

  Inbox(asio::any_io_executor executor, std::shared_ptr<Stream> stream)
      : executor_(executor), timer_(executor), stream_(std::move(stream)) {}

  void set_id(std::uint64_t id) { id_ = id; }
  std::uint64_t id() const { return id_; }

  // Connection thread: queue the session's message; it goes when the
  // window allows (SessionStart and SessionEnd need no credit).
  void send(v1::FrontTagged m, bool drop_queued = false) {
    std::lock_guard l(mu_);
    if (ended_) return;
    if (drop_queued) out_.clear();
    m.set_session(id_);
    out_.push_back(std::move(m));
    flush_locked();
  }
  // Connection thread: several messages, in one write when the window
  // allows them all.
  void send(std::vector<v1::FrontTagged> batch) {
    std::lock_guard l(mu_);
    if (ended_) return;
    for (v1::FrontTagged& m : batch) {
      m.set_session(id_);
      out_.push_back(std::move(m));
    }
    flush_locked();
  }

  // gRPC thread: one tagged message of policyd for this session.
  void deliver(v1::PolicyTagged m) {
    {
      std::lock_guard l(mu_);
      if (m.handled() > handled_) handled_ = m.handled();
      if (m.has_ended()) ended_ = true;
      if (m.kind_case() != v1::PolicyTagged::KIND_NOT_SET) received_.push_back(std::move(m));
      flush_locked();
    }
    wake();
  }
  // gRPC thread: the stream ended; `failure` says why.
  void broken(std::string failure) {
    {
      std::lock_guard l(mu_);
      broken_ = true;
      failure_ = std::move(failure);
    }
    wake();
  }
  bool is_broken() {
    std::lock_guard l(mu_);
    return broken_ && received_.empty();
  }
  std::string failure() {
    std::lock_guard l(mu_);
    return failure_;
  }

  // Connection thread: the next answer until `deadline`; nullopt when the
  // stream broke or the deadline passed.
  asio::awaitable<std::optional<v1::PolicyTagged>> next(Clock::time_point deadline) {
    for (;;) {
      {
        std::lock_guard l(mu_);
        if (!received_.empty()) {
          v1::PolicyTagged m = received_.pop_front();
          co_return m;
        }
        if (broken_) co_return std::nullopt;
      }
      if (Clock::now() >= deadline) co_return std::nullopt;
      timer_.expires_at(deadline);
      asio::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  Stream& stream() { return *stream_; }

 private:
  void flush_locked() {
    if (broken_) return;
    const std::size_t window = stream_->window();
    std::vector<v1::FrontTagged> batch;  // what the credit lets go, in one write
    bool end = false;
    while (!out_.empty() && !end) {
      v1::FrontTagged& m = out_.front();
      if (m.has_event()) {
        if (sent_ - handled_ >= window) break;  // the credit says wait
        ++sent_;
      }
      end = m.has_end();
      batch.push_back(out_.pop_front());
    }
    if (!batch.empty()) stream_->send(std::move(batch), executor_);
    if (end) {
      ended_ = true;
      stream_->detach(id_);
      out_.clear();
    }
  }
  void wake() {
    asio::post(executor_, [self = shared_from_this()] { self->timer_.cancel(); });
  }

  asio::any_io_executor executor_;
  asio::steady_timer timer_;
  std::shared_ptr<Stream> stream_;
  std::uint64_t id_ = 0;

  std::mutex mu_;
  Fifo<v1::FrontTagged> out_;        // past the window, in order
  Fifo<v1::PolicyTagged> received_;  // answers for the coroutine
  std::uint64_t sent_ = 0;           // events sent
  std::uint64_t handled_ = 0;        // policyd's credit
  bool ended_ = false;               // SessionEnd sent, or policyd ended it
  bool broken_ = false;
  std::string failure_;
};

}  // namespace mailhook::front
