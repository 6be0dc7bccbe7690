// The per-connection bridge between libmilter's thread and the Runtime.
#include "policyd/milter/milter_session.h"

#include <atomic>

namespace mailhook::policyd::milter {
namespace {

std::atomic<bool> g_stopping{false};
constexpr std::size_t kChunk = 64 * 1024;  // message bytes per MESSAGE_CHUNK event

}  // namespace

// The observer the runtime holds: decisions in arrival (= event) order.
class MilterSession::Inbox final : public SessionObserver {
 public:
  void opened(Capabilities, Decision connect) override { push(std::move(connect)); }
  void decided(Decision d) override { push(std::move(d)); }

  // The decision for `seq`; earlier ones (answers nobody waits for) are
  // dropped.
  std::optional<Decision> take(std::uint64_t seq, const std::function<void()>& tick) {
    std::unique_lock l(mu_);
    for (;;) {
      while (!decisions_.empty() && decisions_.front().seq < seq) decisions_.pop_front();
      if (!decisions_.empty()) {
        Decision d = std::move(decisions_.front());
        decisions_.pop_front();
        return d;
      }
      if (g_stopping.load()) return std::nullopt;
      if (!cv_.wait_for(l, std::chrono::seconds(1), [&] { return !decisions_.empty() || g_stopping.load(); })) {
        if (tick) {
          l.unlock();
          tick();
          l.lock();
        }
      }
    }
  }

  void wake_all() { cv_.notify_all(); }

 private:
  void push(Decision d) {
    std::lock_guard l(mu_);
    decisions_.push_back(std::move(d));
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Decision> decisions_;
};

MilterSession::MilterSession(Runtime& runtime, Capabilities caps, std::string session_id)
    : runtime_(runtime), caps_(std::move(caps)), id_(std::move(session_id)), inbox_(std::make_shared<Inbox>()) {}

MilterSession::~MilterSession() { close(); }

std::optional<Decision> MilterSession::open(ClientFacts facts, const std::function<void()>& tick) {
  facts_ = std::move(facts);
  SessionStart start;
  start.session_id = id_;
  start.client = facts_;
  session_ = runtime_.open(std::move(start), inbox_);
  if (!caps_.connect_hook) return std::nullopt;
  return inbox_->take(0, tick);
}

SessionEvent MilterSession::stamp(SessionEvent e) {
  e.seq = ++seq_;
  e.transaction_id = transaction_id_;
  e.helo = helo;
  if (facts_dirty_) {
    e.client = facts_;
    facts_dirty_ = false;
  }
  return e;
}

std::optional<Decision> MilterSession::ask(SessionEvent e, const std::function<void()>& tick) {
  if (!session_) return std::nullopt;
  e.wants_reply = true;
  e = stamp(std::move(e));
  const std::uint64_t seq = e.seq;
  session_->post(std::move(e));
  return inbox_->take(seq, tick);
}

void MilterSession::notify(SessionEvent e) {
  if (!session_) return;
  e.wants_reply = false;
  session_->post(stamp(std::move(e)));
}

void MilterSession::add_message_bytes(std::string_view bytes) {
  message_size_ += bytes.size();
  if (!caps_.wants_message) return;
  pending_bytes_.append(bytes);
  if (pending_bytes_.size() >= kChunk) flush_message();
}

void MilterSession::flush_message() {
  if (pending_bytes_.empty()) return;
  SessionEvent e;
  e.kind = EventKind::MessageChunk;
  e.chunk = std::move(pending_bytes_);
  pending_bytes_.clear();
  notify(std::move(e));
}

const std::string& MilterSession::begin_transaction() {
  transaction_id_ = id_ + "T" + std::to_string(++transactions_);
  pending_bytes_.clear();
  message_size_ = 0;
  return transaction_id_;
}

void MilterSession::end_transaction() {
  transaction_id_.clear();
  pending_bytes_.clear();
  message_size_ = 0;
}

void MilterSession::close() {
  if (!session_) return;
  if (caps_.events.has(EventKind::Close)) {
    SessionEvent e;
    e.kind = EventKind::Close;
    notify(std::move(e));
  }
  session_->close();
  session_.reset();
}

void MilterSession::stop_all() { g_stopping.store(true); }

}  // namespace mailhook::policyd::milter
