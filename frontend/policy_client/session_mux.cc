// SessionMux: Stream is the gRPC reactor of one shared Sessions stream; it
// batches what its sessions queue into one FrontFrame per write and routes
// policyd's tagged answers to each session's Inbox. An Inbox queues the
// answers for its connection coroutine (woken through its executor) and
// holds the session's events past the credit window until policyd's
// `handled` lets them go, so one slow session never stalls the stream.
// Lock order: Inbox before Stream; a reactor callback holds neither when it
// calls the other.
#include "frontend/policy_client/session_mux.h"

#include <cctype>
#include <deque>
#include <optional>
#include <unordered_map>

#include "mailcore/telemetry/log.h"
#include "mailcore/util/fifo.h"
#include "mailcore/wire/convert.h"

namespace mailhook::front {
namespace {

using Clock = std::chrono::steady_clock;

// A frame is cut below policyd's 4 MiB receive cap (StreamLimits).
constexpr std::size_t kFrameBytes = 1 << 20;
// Streams tried per session before policyd counts as down at connect.
constexpr int kOpenAttempts = 3;

// gRPC's status in an administrator's words ("unreachable: connection refused").
std::string describe(const grpc::Status& status) {
  if (status.ok()) return "";
  std::string lower = status.error_message();
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    for (const char* cause : {"connection refused", "no route to host", "network is unreachable",
                              "connection reset", "no such file or directory", "handshake failed"}) {
      if (lower.find(cause) != std::string::npos) return std::string("unreachable: ") + cause;
    }
    return "unreachable: " + status.error_message();
  }
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return "serves no shared streams (Sessions: UNIMPLEMENTED: " + status.error_message() + ")";
  }
  return "status " + std::to_string(static_cast<int>(status.error_code())) + ": " + status.error_message();
}

}  // namespace

class SessionMux::Stream final : public grpc::ClientBidiReactor<v1::FrontFrame, v1::PolicyFrame>,
                                 public std::enable_shared_from_this<Stream> {
 public:
  explicit Stream(v1::Policy::Stub& stub) : stub_(stub) {}

  void start() {
    self_ = shared_from_this();
    stub_.async()->Sessions(&context_, this);
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
  void send(v1::FrontTagged m) {
    std::lock_guard l(mu_);
    if (broken_ || write_failed_ || half_closed_) return;
    const std::size_t size = m.ByteSizeLong();
    if (frames_.empty() || (frame_bytes_ + size > kFrameBytes && frames_.back().messages_size() > 0)) {
      frames_.emplace_back();
      frame_bytes_ = 0;
    }
    *frames_.back().add_messages() = std::move(m);
    frame_bytes_ += size;
    if (!writing_) write_next_locked();
  }
  bool usable(Clock::time_point now, std::chrono::seconds age) {
    std::lock_guard l(mu_);
    if (age.count() > 0 && now - born_ >= age) retiring_ = true;
    return usable_locked();
  }
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
    return !broken_ && !drained_ && !retiring_ && !half_closed_ && inboxes_.size() < max_sessions_;
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
    if ((drained_ || retiring_) && inboxes_.empty() && !writing_ && frames_.empty() && !half_closed_ && !broken_ &&
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

  std::mutex mu_;
  std::deque<v1::FrontFrame> frames_;  // waiting; the back one fills
  std::size_t frame_bytes_ = 0;
  std::unordered_map<std::uint64_t, std::shared_ptr<Inbox>> inboxes_;
  std::uint64_t last_id_ = 0;
  std::size_t window_ = 64;          // StreamLimits once known
  std::size_t max_sessions_ = 10000;
  bool writing_ = false;
  bool write_failed_ = false;  // OnDone follows with the status
  bool broken_ = false;        // OnDone ran
  std::string failure_;
  bool unimplemented_ = false;
  bool drained_ = false;
  bool retiring_ = false;
  bool half_closed_ = false;
};

class SessionMux::Inbox final : public std::enable_shared_from_this<Inbox> {
 public:
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
    while (!out_.empty()) {
      v1::FrontTagged& m = out_.front();
      if (m.has_event()) {
        if (sent_ - handled_ >= window) return;  // the credit says wait
        ++sent_;
      }
      const bool end = m.has_end();
      stream_->send(out_.pop_front());
      if (end) {
        ended_ = true;
        stream_->detach(id_);
        out_.clear();
        return;
      }
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

void SessionMux::Stream::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  std::vector<std::pair<std::shared_ptr<Inbox>, v1::PolicyTagged>> routed;
  {
    std::lock_guard l(mu_);
    if (in_.has_limits()) {
      window_ = std::max<std::size_t>(1, in_.limits().max_pending_events());
      max_sessions_ = std::max<std::size_t>(1, in_.limits().max_sessions());
    }
    if (in_.has_drain()) {
      drained_ = true;
      maybe_half_close_locked();
    }
    for (v1::PolicyTagged& m : *in_.mutable_messages()) {
      const auto it = inboxes_.find(m.session());
      if (it == inboxes_.end()) continue;  // a session already ended here
      routed.emplace_back(it->second, std::move(m));
      if (routed.back().second.has_ended()) {
        inboxes_.erase(it);  // policyd forgot it
        maybe_half_close_locked();
      }
    }
  }
  in_.Clear();
  for (auto& [inbox, m] : routed) inbox->deliver(std::move(m));
  StartRead(&in_);
}

void SessionMux::Stream::OnWriteDone(bool ok) {
  std::lock_guard l(mu_);
  writing_ = false;
  if (!ok) {  // broken; OnDone follows with the status (sessions attached meanwhile learn it there)
    write_failed_ = true;
    frames_.clear();
    return;
  }
  write_next_locked();
  if (!writing_) maybe_half_close_locked();
}

void SessionMux::Stream::OnDone(const grpc::Status& status) {
  std::unordered_map<std::uint64_t, std::shared_ptr<Inbox>> orphans;
  const std::string why = status.ok() ? "stream ended" : describe(status);
  {
    std::lock_guard l(mu_);
    broken_ = true;
    failure_ = why;
    unimplemented_ = status.error_code() == grpc::StatusCode::UNIMPLEMENTED;
    orphans.swap(inboxes_);
  }
  for (auto& [id, inbox] : orphans) inbox->broken(why);
  self_.reset();  // others (an Inbox, the mux) may hold it a while longer
}

namespace {

class MuxSession final : public PolicySession {
 public:
  MuxSession(SessionMux& mux, asio::any_io_executor executor) : mux_(mux), executor_(std::move(executor)) {}
  ~MuxSession() override { abort(); }

  asio::awaitable<PolicyOpening> open(SessionStart start, PolicyClock::time_point deadline) override {
    if (mux_.per_call_only()) {
      per_call_ = mux_.per_call().session(executor_);
      co_return co_await per_call_->open(std::move(start), deadline);
    }
    v1::FrontTagged first;
    wire::to_proto(start, first.mutable_start());
    PolicyOpening opening;
    std::optional<v1::PolicyTagged> m;
    std::shared_ptr<SessionMux::Stream> last;  // the stream tried last
    // A stream that breaks before policyd opened the session (a replica
    // that just died) is tried again on another: nothing was said to the
    // client yet. A slow policyd is not retried: the deadline covers all.
    for (int attempt = 0; attempt < kOpenAttempts && !m; ++attempt) {
      std::shared_ptr<SessionMux::Stream> stream = mux_.pick();
      last = stream;
      auto inbox = std::make_shared<SessionMux::Inbox>(executor_, stream);
      const std::uint64_t id = stream->attach(inbox);
      if (id == 0) {  // it broke since pick()
        broke_ = stream->failure();
        if (stream->unimplemented()) break;
        continue;
      }
      inbox_ = std::move(inbox);
      inbox_->set_id(id);
      inbox_->send(first);
      m = co_await inbox_->next(deadline);
      if (!m && !inbox_->is_broken()) break;  // the deadline passed
      if (!m) broke_ = inbox_->failure();
      if (!m && stream->unimplemented()) break;
    }
    if (!m && !broke_.empty() && last && last->unimplemented()) {
      // An older policyd: this session, and every new one for
      // --policy-stream-age, goes one call each (nothing was said to the
      // client yet).
      mux_.fall_back(broke_);
      inbox_.reset();
      broke_.clear();
      per_call_ = mux_.per_call().session(executor_);
      co_return co_await per_call_->open(std::move(start), deadline);
    }
    if (m && m->has_opened()) {
      broke_.clear();  // an earlier attempt's; this stream serves
      mux_.streams_serve();
      opening.capabilities = wire::from_proto(m->opened().capabilities());
      opening.decision = wire::from_proto(m->opened().decision());
      co_return opening;
    }
    fault_ = opening.fault = PolicyFault::Unavailable;
    failure_ = failure_text(m);
    opening.failure = failure_;
    if (inbox_) inbox_->send(end_message(), true);
    co_return opening;
  }

  asio::awaitable<PolicyAnswer> ask(SessionEvent event, PolicyClock::time_point deadline) override {
    if (per_call_) co_return co_await per_call_->ask(std::move(event), deadline);
    PolicyAnswer answer;
    if (fault_ != PolicyFault::None || !inbox_) {
      answer.fault = fault_ == PolicyFault::None ? PolicyFault::Unavailable : fault_;
      answer.failure = failure_;
      co_return answer;
    }
    const std::uint64_t seq = event.seq;
    notify(std::move(event));
    std::optional<v1::PolicyTagged> m = co_await inbox_->next(deadline);
    if (m && m->has_decision() && m->decision().seq() == seq) {
      answer.decision = wire::from_proto(m->decision());
      co_return answer;
    }
    fault_ = m && m->has_decision() ? PolicyFault::OutOfOrder : PolicyFault::Unavailable;
    failure_ = fault_ == PolicyFault::OutOfOrder
                   ? "policy daemon " + log::escape_text(mux_.target()) + " answered out of order"
                   : failure_text(m);
    inbox_->send(end_message(), true);
    answer.fault = fault_;
    answer.failure = failure_;
    co_return answer;
  }

  void notify(SessionEvent event) override {
    if (per_call_) return per_call_->notify(std::move(event));
    if (fault_ != PolicyFault::None || !inbox_ || closed_) return;
    v1::FrontTagged m;
    wire::to_proto(std::move(event), m.mutable_event());
    inbox_->send(std::move(m));
  }
  void close() override {
    if (per_call_) return per_call_->close();
    if (!inbox_ || closed_) return;
    closed_ = true;
    inbox_->send(end_message());
  }
  void abort() override {
    if (per_call_) return per_call_->abort();
    if (!inbox_ || closed_) return;
    closed_ = true;
    inbox_->send(end_message(), true);
  }

 private:
  static v1::FrontTagged end_message() {
    v1::FrontTagged m;
    m.mutable_end();
    return m;
  }
  // Why there is no answer: policyd ended the session, the stream broke,
  // or --policy-timeout passed. Never holds client bytes.
  std::string failure_text(const std::optional<v1::PolicyTagged>& m) {
    const std::string target = "policy daemon " + log::escape_text(mux_.target());
    if (m && m->has_ended()) return target + " ended the session: " + log::escape_text(m->ended().reason());
    if (inbox_ && inbox_->is_broken()) broke_ = inbox_->failure();
    if (!broke_.empty()) {
      return target + " " + (broke_.rfind("unreachable", 0) == 0 ? "" : "failed: ") + log::escape_text(broke_);
    }
    return target + " gave no answer within --policy-timeout " + std::to_string(mux_.timeout().count()) + "ms";
  }

  SessionMux& mux_;
  asio::any_io_executor executor_;
  std::shared_ptr<SessionMux::Inbox> inbox_;
  std::unique_ptr<PolicySession> per_call_;  // policyd has no Sessions: all goes through it
  PolicyFault fault_ = PolicyFault::None;  // once set, the session is finished
  std::string failure_;
  std::string broke_;  // why the last stream tried broke
  bool closed_ = false;
};

}  // namespace

SessionMux::SessionMux(v1::Policy::Stub& stub, std::string target, std::chrono::milliseconds timeout,
                       SessionMuxOptions options, PolicyLink& per_call)
    : stub_(stub), target_(std::move(target)), timeout_(timeout), options_(options), per_call_(per_call) {}

void SessionMux::fall_back(const std::string& why) {
  // Every session that meets UNIMPLEMENTED pushes the re-probe out; the
  // sessions racing to one probe all land within the same interval.
  per_call_until_.store((Clock::now() + options_.stream_age).time_since_epoch().count(), std::memory_order_relaxed);
  {
    std::lock_guard l(mu_);
    for (auto& s : streams_) s->retire();
    streams_.clear();
  }
  const FallbackNotices::Note note = notices_.fell_back(Clock::now());
  const std::string target = log::escape_text(target_);
  switch (note.say) {
    case FallbackNotices::Say::OlderPolicyd:
      log::warning("policy daemon {} {}: one gRPC call per SMTP session, shared streams tried again every "
                   "--policy-stream-age {}s (upgrade policyd to get them back, or set --policy-streams 0 to say so)",
                   target, log::escape_text(why), options_.stream_age.count());
      break;
    case FallbackNotices::Say::ReplicasDiffer:
      // `why` is the older replicas' UNIMPLEMENTED, said with OlderPolicyd.
      log::warning("policy daemon {}: replicas differ: some serve shared streams, some do not (Sessions "
                   "UNIMPLEMENTED: mixed versions, as in a rolling upgrade): new SMTP sessions switch between "
                   "shared streams and one gRPC call each every --policy-stream-age {}s; said again at most every "
                   "{} min with the count, and once when every replica serves shared streams",
                   target, options_.stream_age.count(),
                   std::chrono::duration_cast<std::chrono::minutes>(FallbackNotices::kSummaryEvery).count());
      break;
    case FallbackNotices::Say::StillDiffer:
      log::warning("policy daemon {}: replicas still differ: {} more switches to one gRPC call per SMTP session "
                   "in {} min (finish the upgrade)",
                   target, note.flips,
                   std::chrono::duration_cast<std::chrono::minutes>(FallbackNotices::kSummaryEvery).count());
      break;
    case FallbackNotices::Say::Flip:
      log::debug("policy daemon {}: replicas differ, switch {} to one gRPC call per SMTP session for {}s", target,
                 note.flips, options_.stream_age.count());
      break;
    default:  // a re-probe met the older policyd again, or a session racing to the same broken stream
      break;
  }
}

void SessionMux::streams_serve() {
  const FallbackNotices::Note note = notices_.served(Clock::now());
  if (note.say == FallbackNotices::Say::ServeAgain) {
    log::info("policy daemon {} serves shared streams again: new SMTP sessions share {} streams",
              log::escape_text(target_), options_.streams);
  } else if (note.say == FallbackNotices::Say::AllServe) {
    log::info("policy daemon {}: every replica it reaches serves shared streams ({}s without a fallback, after {} "
              "switches since the replicas differed): new SMTP sessions share {} streams",
              log::escape_text(target_), options_.stream_age.count() * FallbackNotices::kHealAges, note.flips,
              options_.streams);
  }
}

SessionMux::~SessionMux() {
  std::lock_guard l(mu_);
  for (auto& s : streams_) s->cancel();
}

std::shared_ptr<SessionMux::Stream> SessionMux::pick() {
  std::lock_guard l(mu_);
  const Clock::time_point now = Clock::now();
  // Streams that take no new session leave the rotation; their sessions
  // keep them alive until they end.
  std::erase_if(streams_, [&](const std::shared_ptr<Stream>& s) {
    if (s->usable(now, options_.stream_age)) return false;
    s->retire();
    return true;
  });
  // Fewer than asked: a new stream, which gRPC's round robin places on the
  // next replica.
  if (streams_.size() < options_.streams) {
    auto s = std::make_shared<Stream>(stub_);
    s->start();
    streams_.push_back(s);
    return s;
  }
  return streams_[next_++ % streams_.size()];
}

std::unique_ptr<PolicySession> SessionMux::session(asio::any_io_executor executor) {
  return std::make_unique<MuxSession>(*this, std::move(executor));
}

}  // namespace mailhook::front
