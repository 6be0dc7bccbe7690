// Test harness for the policyd runtime: scripts written to a temp dir, a
// Runtime with one worker, and an observer whose answers the test awaits
// (condition variable with a deadline, never a sleep).
#pragma once

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>

#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/runtime.h"
#include "policyd/testing/recording_observer.h"

namespace mailhook::policyd::testing {

// The next decision, or a test failure after 10 s.
inline Decision next_decision(RecordingObserver& o) {
  std::optional<Decision> d = o.next(std::chrono::seconds(10));
  if (!d) {
    ADD_FAILURE() << "no decision within 10s";
    return Decision{};
  }
  return std::move(*d);
}

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/mailhook-policyd-test.XXXXXX";
    dir_ = mkdtemp(templ);
    config_.workers = 1;
    config_.modules = lua_modules();
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
      return next_decision(*observer);
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
    c.connect = next_decision(*c.observer);
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
