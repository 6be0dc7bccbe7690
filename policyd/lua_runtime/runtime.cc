// Runtime: worker threads (one asio::io_context, one Generation and one
// DNS resolver each) and the session handles the transports hold.
// Transports post; each session is one coroutine on its worker that takes
// its events in order, so a hook suspended on DNS holds up its own session
// only. Decisions go to the observer on the worker's thread.
#include "policyd/lua_runtime/runtime.h"

#include <asio.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "mailcore/net/cidr.h"
#include "mailcore/session/reply_rules.h"
#include "mailcore/telemetry/log.h"
#include "mailcore/util/fifo.h"
#include "policyd/dns/resolver.h"
#include "policyd/lua_runtime/activity.h"
#include "mailcore/telemetry/decision_log.h"
#include "policyd/lua_runtime/client_host.h"
#include "policyd/lua_runtime/hook_runner.h"
#include "policyd/lua_runtime/loader.h"
#include "policyd/lua_runtime/runtime_metrics.h"
#include "policyd/lua_runtime/session_events.h"
#include "policyd/kv/redis_client.h"
#include "policyd/dns/fake_resolver.h"

namespace mailhook::policyd {
namespace {

// The resolver's part of the runtime's options (--dns-*), every field.
dns::ResolverConfig resolver_config_of(const RuntimeConfig& c) {
  return dns::ResolverConfig{.servers = c.dns_servers,
                             .timeout = c.dns_timeout,
                             .cache_entries = c.dns_cache_entries,
                             .receive_buffer = c.dns_receive_buffer};
}

class Worker {
 public:
  explicit Worker(std::shared_ptr<Generation> g) : generation_(std::move(g)), guard_(io_.get_executor()) {}
  ~Worker() { stop(); }

  bool start(const RuntimeConfig& c, std::string& error) {
    resolver_ = c.fake_dns ? dns::make_fake_resolver(io_, c.fake_dns)
                           : dns::Resolver::create(io_, resolver_config_of(c), error);
    if (!resolver_) return false;
    if (!c.kv_address.empty()) {
      kv_ = kv::RedisClient::create(io_, kv::Config{c.kv_address, c.kv_timeout});
      if (!kv_) {
        int port = 0;
        std::string host;
        kv::parse_address(c.kv_address, host, port, error);
        return false;
      }
    }
    thread_ = std::thread([this] { io_.run(); });
    return true;
  }

  // After drain: sessions still waiting (on DNS) are dropped with the loop.
  void stop() {
    guard_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    resolver_.reset();
    kv_.reset();
  }

  asio::io_context& io() { return io_; }
  dns::Resolver* resolver() { return resolver_.get(); }
  kv::RedisClient* kv() { return kv_.get(); }
  // Worker thread only.
  std::shared_ptr<Generation>& generation() { return generation_; }
  std::atomic<int>& sessions() { return sessions_; }

 private:
  std::shared_ptr<Generation> generation_;
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::unique_ptr<dns::Resolver> resolver_;  // before the loop ends, after it stops
  std::shared_ptr<kv::RedisClient> kv_;      // the same
  std::atomic<int> sessions_{0};
  std::thread thread_;
};

// A session's state; touched only on its worker's thread.
struct SessionRecord {
  SessionContext ctx;
  std::shared_ptr<Generation> generation;  // keeps its state alive
  std::shared_ptr<SessionObserver> observer;
  Worker* worker = nullptr;
  std::optional<ActivityLog> activity;
  Fifo<SessionEvent> queue;  // events not yet handled
  bool running = false;            // the session's coroutine is active
  bool closing = false;            // the transport is gone
  bool close_hook_ran = false;
  bool ended = false;
  // A decision since the last non-speculative event broke the front's
  // prediction (reply_rules.h keeps_prediction): speculative events run
  // no hook until the next non-speculative one (session.proto).
  bool prediction_broken = false;

  ~SessionRecord() {
    if (!ended) discard_session(ctx);  // the worker stopped first: no hooks
  }
};

// hook.accept's ptr argument needs client.host before the hook runs; other
// hooks look it up only when a script reads client.host.
bool host_needed_now(SessionContext& s) {
  return s.ptr_lookup && s.resolver && !s.host_resolved && has_hook(*s.generation, HookPhase::Accept);
}

// The session's life: client.host if needed, hook.accept, then its events
// in order; after close, hook.close if the CLOSE event never came.
asio::awaitable<void> run_session(std::shared_ptr<SessionRecord> r, bool opening) {
  SessionContext& s = r->ctx;
  if (opening) {
    if (host_needed_now(s)) {
      start_host_lookup(s);
      while (!s.host_resolved && !s.aborted) {
        co_await s.waker->wait();
      }
    }
  }
  if (opening && !s.aborted) {
    Decision d = co_await accept_session(s);
    log::info("session={} client={} policy={} connect={}", log::escape(s.start.session_id),
              log::client_token(s.start.client.host, s.start.client.address), r->generation->capabilities.policy_name,
              d.action == Decision::Action::Reply ? "\"" + log::reply_text(d.reply) + "\"" : "default");
    s.metrics->decision(d);
    if (r->observer) r->observer->opened(r->generation->capabilities, std::move(d));
  }
  while (!r->queue.empty() && !s.aborted) {
    const SessionEvent e = r->queue.pop_front();
    if (e.speculative && r->prediction_broken) {
      // The front built it on a prediction that failed: the script must
      // see only the events it would see unpipelined, so nothing runs.
      Decision skipped = Decision::proceed(e.seq);
      skipped.skipped = true;
      if (e.wants_reply && r->observer) r->observer->decided(std::move(skipped));
      if (r->observer) r->observer->handled();
      continue;
    }
    if (!e.speculative) r->prediction_broken = false;
    if (e.kind == EventKind::Close) r->close_hook_ran = true;
    r->activity->before(e);  // a new transaction's checks go on its own line
    std::optional<Decision> d = co_await handle_event(s, e);
    r->activity->record(e, d);
    if (e.wants_reply && (!d || !session::keeps_prediction(e, *d))) r->prediction_broken = true;
    if (d && r->observer) r->observer->decided(std::move(*d));
    if (r->observer) r->observer->handled();
  }
  r->running = false;
  if (!r->closing || r->ended) co_return;
  s.aborted = false;  // hook.close still runs after a dropped wait
  r->running = true;
  co_await end_session(s, r->close_hook_ran);
  r->activity->session_ended();
  r->ended = true;
  r->running = false;
  r->observer.reset();
  s.metrics->sessions_open.add(-1);
  r->worker->sessions().fetch_sub(1);
}

void spawn(const std::shared_ptr<SessionRecord>& r, bool opening) {
  r->running = true;
  asio::co_spawn(r->worker->io(), run_session(r, opening), asio::detached);
}

class SessionHandle final : public Session {
 public:
  SessionHandle(Worker& w, std::shared_ptr<SessionRecord> r) : worker_(w), record_(std::move(r)) {}
  ~SessionHandle() override { close(); }

  void post(SessionEvent event) override {
    asio::post(worker_.io(), [r = record_, e = std::move(event)]() mutable {
      if (r->ended || r->closing) return;
      r->queue.push_back(std::move(e));
      if (!r->running) spawn(r, false);
    });
  }

  void close() override {
    if (closed_.exchange(true)) return;
    asio::post(worker_.io(), [r = record_] {
      if (r->ended || r->closing) return;
      r->closing = true;
      if (r->running) {
        // The coroutine can only be waiting on I/O (DNS): drop the wait and
        // the events behind it; the coroutine then ends the session.
        r->ctx.aborted = true;
        r->ctx.wake();
        return;
      }
      spawn(r, false);
    });
  }

 private:
  Worker& worker_;
  std::shared_ptr<SessionRecord> record_;
  std::atomic<bool> closed_{false};
};

// --trace: the client's address is inside one of the networks
// ("192.0.2.0/24", "2001:db8::/32", or one address).
bool traced(const std::vector<std::string>& networks, const std::string& address) {
  std::optional<net::Address> a = net::parse_address(address);
  if (!a) return false;
  std::string error;
  for (const std::string& n : networks) {
    std::optional<net::Cidr> c = net::Cidr::parse(n, error);  // checked by --trace's validator
    if (c && c->contains(*a)) return true;
  }
  return false;
}

class RuntimeImpl final : public Runtime {
 public:
  explicit RuntimeImpl(const RuntimeConfig& c)
      : config_(c), metrics_(c.registry ? *c.registry : own_registry_) {
    if (!config_.map_store) config_.map_store = std::make_shared<map::MapStore>();  // one for all workers
  }
  ~RuntimeImpl() override { stop(); }

  bool start(std::string& error) {
    for (int i = 0; i < config_.workers; ++i) {
      auto g = load_generation(config_, error);
      if (!g) return false;
      metrics_.register_scripts(*g);
      if (i == 0) register_hook_error_series(*g, metrics_);
      set_capabilities(g->capabilities);
      workers_.push_back(std::make_unique<Worker>(std::move(g)));
      if (!workers_.back()->start(config_, error)) return false;
    }
    return true;
  }

  std::shared_ptr<Session> open(SessionStart start, std::shared_ptr<SessionObserver> observer) override {
    return open_on(least_busy_worker(), std::move(start), std::move(observer));
  }

  std::size_t least_busy_worker() const override {
    std::size_t best = 0;
    for (std::size_t i = 1; i < workers_.size(); ++i) {
      if (workers_[i]->sessions().load() < workers_[best]->sessions().load()) best = i;
    }
    return best;
  }

  asio::any_io_executor worker_executor(std::size_t worker) override {
    return workers_.at(worker)->io().get_executor();
  }

  std::shared_ptr<Session> open_on(std::size_t worker, SessionStart start,
                                   std::shared_ptr<SessionObserver> observer) override {
    Worker* w = workers_.at(worker).get();
    w->sessions().fetch_add(1);
    metrics_.sessions_total.add();
    metrics_.sessions_open.add(1);
    auto r = std::make_shared<SessionRecord>();
    r->ctx.start = std::move(start);
    r->observer = std::move(observer);
    r->worker = w;
    r->running = true;  // events wait for hook.accept
    asio::post(w->io(), [this, r, w] {
      SessionContext& s = r->ctx;
      r->generation = w->generation();
      s.generation = r->generation.get();
      s.metrics = &metrics_;
      s.resolver = w->resolver();
      s.kv = w->kv();
      s.waker = std::make_shared<Waker>(w->io().get_executor());
      s.ptr_lookup = config_.ptr_lookup;
      s.trace = traced(config_.trace, s.start.client.address);
      s.host_resolved = !s.start.client.host.empty() || !config_.ptr_lookup;
      r->activity.emplace(s.start, metrics_, s.auth);
      spawn(r, true);
    });
    return std::make_shared<SessionHandle>(*w, std::move(r));
  }

  std::string reload() override { return reload(config_); }

  std::string reload(const RuntimeConfig& next) override {
    // Staged on a copy; config_ takes the new fields only once every
    // worker's state loaded. Workers read only ptr_lookup and trace from
    // config_, which a reload leaves alone.
    RuntimeConfig staged = config_;
    staged.scripts = next.scripts;
    staged.shadow = next.shadow;
    staged.shadow_scripts = next.shadow_scripts;
    staged.dialect = next.dialect;
    staged.hook_timeout = next.hook_timeout;
    staged.lua_memory_bytes = next.lua_memory_bytes;
    staged.load_timeout = next.load_timeout;
    staged.lua_read_dirs = next.lua_read_dirs;
    staged.lua_write_dirs = next.lua_write_dirs;
    staged.lua_path = next.lua_path;
    staged.lua_env = next.lua_env;
    staged.spf_max_dns_lookups = next.spf_max_dns_lookups;
    staged.spf_max_void_lookups = next.spf_max_void_lookups;
    staged.spf_timeout = next.spf_timeout;
    std::vector<std::shared_ptr<Generation>> fresh;
    std::string error;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      auto g = load_generation(staged, error);
      if (!g) return error;
      metrics_.register_scripts(*g);
      fresh.push_back(std::move(g));
    }
    if (&next != &config_) {
      config_.scripts = staged.scripts;
      config_.shadow = staged.shadow;
      config_.shadow_scripts = staged.shadow_scripts;
      config_.dialect = staged.dialect;
      config_.hook_timeout = staged.hook_timeout;
      config_.lua_memory_bytes = staged.lua_memory_bytes;
      config_.load_timeout = staged.load_timeout;
      config_.lua_read_dirs = staged.lua_read_dirs;
      config_.lua_write_dirs = staged.lua_write_dirs;
      config_.lua_path = staged.lua_path;
      config_.lua_env = staged.lua_env;
      config_.spf_max_dns_lookups = staged.spf_max_dns_lookups;
      config_.spf_max_void_lookups = staged.spf_max_void_lookups;
      config_.spf_timeout = staged.spf_timeout;
      config_.hook_error_tempfail = staged.hook_error_tempfail;
      config_.dkim_max_signatures = staged.dkim_max_signatures;
    }
    register_hook_error_series(*fresh.front(), metrics_);  // a script new in this reload
    set_capabilities(fresh.front()->capabilities);
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

  Capabilities capabilities() const override {
    std::lock_guard l(caps_mu_);
    return capabilities_;
  }

  std::size_t open_sessions() const override {
    std::size_t n = 0;
    for (const auto& w : workers_) n += static_cast<std::size_t>(w->sessions().load());
    return n;
  }

  void ping_workers(std::function<void()> answered) override {
    auto once = std::make_shared<std::atomic<bool>>(false);
    auto shared = std::make_shared<std::function<void()>>(std::move(answered));
    for (auto& w : workers_) {
      asio::post(w->io(), [once, shared] {
        if (!once->exchange(true)) (*shared)();
      });
    }
  }

  void stop() override {
    for (auto& w : workers_) w->stop();
  }

 private:
  void set_capabilities(const Capabilities& c) {
    std::lock_guard l(caps_mu_);
    capabilities_ = c;
  }

  RuntimeConfig config_;
  mutable std::mutex caps_mu_;
  Capabilities capabilities_;
  telemetry::Registry own_registry_;
  RuntimeMetrics metrics_;
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
  if (!load_generation(config, error)) return error;
  return dns::Resolver::check(resolver_config_of(config));
}

}  // namespace mailhook::policyd
