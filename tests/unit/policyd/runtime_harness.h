// Test harness for the policyd runtime: scripts written to a temp dir, a
// Runtime with one worker, and an observer whose answers the test awaits
// (condition variable with a deadline, never a sleep).
#pragma once

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>

#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd::testing {

class RecordingObserver : public SessionObserver {
 public:
  void opened(Capabilities c, Decision d) override {
    std::lock_guard l(mu_);
    capabilities = c;
    decisions_.push_back(std::move(d));
    cv_.notify_all();
  }
  void decided(Decision d) override {
    std::lock_guard l(mu_);
    decisions_.push_back(std::move(d));
    cv_.notify_all();
  }
  Decision next() {
    std::unique_lock l(mu_);
    if (!cv_.wait_for(l, std::chrono::seconds(10), [&] { return !decisions_.empty(); })) {
      ADD_FAILURE() << "no decision within 10s";
      return Decision{};
    }
    Decision d = std::move(decisions_.front());
    decisions_.pop_front();
    return d;
  }
  Capabilities capabilities;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Decision> decisions_;
};

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/mailhook-policyd-test.XXXXXX";
    dir_ = mkdtemp(templ);
    config_.workers = 1;
    config_.spool_dir = dir_ / "spool";
    std::filesystem::create_directories(config_.spool_dir);
  }
  void TearDown() override {
    if (runtime_) runtime_->stop();
    std::filesystem::remove_all(dir_);
  }

  std::filesystem::path write_script(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }

  // Loads `text` as the only script and starts the runtime.
  void load(const std::string& text) { start({write_script("policy.lua", text)}); }

  void start(std::vector<std::filesystem::path> scripts) {
    config_.scripts = std::move(scripts);
    std::string error;
    runtime_ = Runtime::create(config_, error);
    ASSERT_TRUE(runtime_) << error;
  }

  struct Client {
    std::shared_ptr<Session> session;
    std::shared_ptr<RecordingObserver> observer;
    Decision connect;
    std::uint64_t seq = 0;
    std::string transaction;

    Decision send(EventKind kind, std::string argument = "", std::string address = "") {
      SessionEvent e;
      e.seq = ++seq;
      e.kind = kind;
      e.wants_reply = true;
      e.argument = std::move(argument);
      e.address = std::move(address);
      e.input = "INPUT " + e.argument + e.address;
      e.transaction_id = transaction;
      session->post(std::move(e));
      return observer->next();
    }
    void notify(EventKind kind, std::string chunk = "") {
      SessionEvent e;
      e.seq = ++seq;
      e.kind = kind;
      e.chunk = std::move(chunk);
      e.transaction_id = transaction;
      session->post(std::move(e));
    }
  };

  Client connect(std::string address = "192.0.2.7") {
    Client c;
    c.observer = std::make_shared<RecordingObserver>();
    SessionStart s;
    s.session_id = "S" + std::to_string(++sessions_);
    s.local_host = "mx.test";
    s.client.address = std::move(address);
    s.client.port = 4567;
    s.client.host = "client.test";
    s.early_talker = true;
    c.session = runtime_->open(std::move(s), c.observer);
    c.connect = c.observer->next();
    return c;
  }

  static std::string text(const Decision& d) {
    return d.action == Decision::Action::Reply ? d.reply.summary() : "CONTINUE";
  }

  std::filesystem::path dir_;
  RuntimeConfig config_;
  std::unique_ptr<Runtime> runtime_;
  int sessions_ = 0;
};

}  // namespace mailhook::policyd::testing
