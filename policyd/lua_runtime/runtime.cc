// Runtime: worker threads (one asio::io_context and one Generation each)
// and the session handles the transports hold. Transports post; the
// worker runs the Lua and hands decisions to the observer on its thread.
#include "policyd/lua_runtime/runtime.h"

#include <asio.hpp>

#include <atomic>
#include <future>
#include <thread>

#include "mailcore/telemetry/log.h"
#include "policyd/lua_runtime/hook_runner.h"
#include "policyd/lua_runtime/loader.h"
#include "policyd/lua_runtime/session_events.h"

namespace mailhook::policyd {
namespace {

class Worker {
 public:
  explicit Worker(std::shared_ptr<Generation> g) : generation_(std::move(g)), guard_(io_.get_executor()) {
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Worker() { stop(); }

  void stop() {
    guard_.reset();
    if (thread_.joinable()) thread_.join();
  }

  asio::io_context& io() { return io_; }
  // Worker thread only.
  std::shared_ptr<Generation>& generation() { return generation_; }
  std::atomic<int>& sessions() { return sessions_; }

 private:
  std::shared_ptr<Generation> generation_;
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::atomic<int> sessions_{0};
  std::thread thread_;
};

// A session's state; touched only on its worker's thread.
struct SessionRecord {
  SessionContext ctx;
  std::shared_ptr<Generation> generation;  // keeps its state alive
  std::shared_ptr<SessionObserver> observer;
  Worker* worker = nullptr;
  bool close_hook_ran = false;
  bool ended = false;

  ~SessionRecord() {
    if (!ended) end_session(ctx, true);  // worker stopped first: no hooks
  }
};

class SessionHandle final : public Session {
 public:
  SessionHandle(Worker& w, std::shared_ptr<SessionRecord> r) : worker_(w), record_(std::move(r)) {}
  ~SessionHandle() override { close(); }

  void post(SessionEvent event) override {
    asio::post(worker_.io(), [r = record_, e = std::move(event)]() mutable {
      if (r->ended) return;
      if (e.kind == EventKind::Close) r->close_hook_ran = true;
      std::optional<Decision> d = handle_event(r->ctx, e);
      if (d && r->observer) r->observer->decided(std::move(*d));
    });
  }

  void close() override {
    if (closed_.exchange(true)) return;
    asio::post(worker_.io(), [r = record_, &w = worker_] {
      if (r->ended) return;
      end_session(r->ctx, r->close_hook_ran);
      r->ended = true;
      r->observer.reset();
      w.sessions().fetch_sub(1);
    });
  }

 private:
  Worker& worker_;
  std::shared_ptr<SessionRecord> record_;
  std::atomic<bool> closed_{false};
};

class RuntimeImpl final : public Runtime {
 public:
  explicit RuntimeImpl(const RuntimeConfig& c) : config_(c) {}
  ~RuntimeImpl() override { stop(); }

  bool start(std::string& error) {
    for (int i = 0; i < config_.workers; ++i) {
      auto g = load_generation(config_, error);
      if (!g) return false;
      workers_.push_back(std::make_unique<Worker>(std::move(g)));
    }
    return true;
  }

  std::shared_ptr<Session> open(SessionStart start, std::shared_ptr<SessionObserver> observer) override {
    Worker* w = workers_.front().get();
    for (auto& candidate : workers_) {
      if (candidate->sessions().load() < w->sessions().load()) w = candidate.get();
    }
    w->sessions().fetch_add(1);
    auto r = std::make_shared<SessionRecord>();
    r->ctx.start = std::move(start);
    r->observer = std::move(observer);
    r->worker = w;
    asio::post(w->io(), [r, w] {
      r->generation = w->generation();
      r->ctx.generation = r->generation.get();
      Decision d = accept_session(r->ctx);
      log::info("session={} client={} policy={} connect={}", r->ctx.start.session_id,
                r->ctx.start.client.address, r->generation->capabilities.policy_name,
                d.action == Decision::Action::Reply ? d.reply.summary() : "default");
      if (r->observer) r->observer->opened(r->generation->capabilities, std::move(d));
    });
    return std::make_shared<SessionHandle>(*w, std::move(r));
  }

  std::string reload() override {
    std::vector<std::shared_ptr<Generation>> fresh;
    std::string error;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      auto g = load_generation(config_, error);
      if (!g) return error;
      fresh.push_back(std::move(g));
    }
    std::vector<std::future<void>> swapped;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      auto done = std::make_shared<std::promise<void>>();
      swapped.push_back(done->get_future());
      asio::post(workers_[i]->io(), [w = workers_[i].get(), g = std::move(fresh[i]), done]() mutable {
        w->generation() = std::move(g);  // the old one lives on in its sessions
        done->set_value();
      });
    }
    for (auto& f : swapped) f.wait();
    return "";
  }

  std::size_t open_sessions() const override {
    std::size_t n = 0;
    for (const auto& w : workers_) n += static_cast<std::size_t>(w->sessions().load());
    return n;
  }

  void stop() override {
    for (auto& w : workers_) w->stop();
  }

 private:
  RuntimeConfig config_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace

std::unique_ptr<Runtime> Runtime::create(const RuntimeConfig& config, std::string& error) {
  auto r = std::make_unique<RuntimeImpl>(config);
  if (!r->start(error)) return nullptr;
  return r;
}

std::string Runtime::check(const RuntimeConfig& config) {
  std::string error;
  return load_generation(config, error) ? "" : error;
}

}  // namespace mailhook::policyd
