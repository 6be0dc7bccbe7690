// mailhook-policyd over real gRPC: the session stream exactly as the front
// uses it, grpc.health.v1, and the SIGTERM drain. Starts the real binary
// on a free loopback port and stops it by PID.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "link_support.h"
#include "mailhook/v1/session.grpc.pb.h"

extern char** environ;

namespace {

namespace v1 = mailhook::v1;
using link_support::free_port;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

class Policyd : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string script = ::testing::TempDir() + "grpc_test_policy.lua";
    std::ofstream(script) << R"(function hook.rcpt(r) return "550 5.1.1 no " .. r .. "\r\n" end)";
    target_ = "127.0.0.1:" + std::to_string(free_port());
    std::vector<std::string> args = {MAILHOOK_POLICYD, "--listen", target_, "--script", script, "--log-stderr",
                                     "--workers", "1", "--drain-timeout", "20"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    channel_ = grpc::CreateChannel(target_, grpc::InsecureChannelCredentials());
    ASSERT_TRUE(channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)));
    stub_ = v1::Policy::NewStub(channel_);
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  HealthStatus::ServingStatus health() {
    auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    HealthStatus resp;
    const grpc::Status s = stub->Check(&ctx, req, &resp);
    return s.ok() ? resp.status() : HealthStatus::UNKNOWN;
  }

  // Waits for policyd to exit; its exit status, or -1 after the deadline.
  int wait_exit(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  std::string target_;
  pid_t pid_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Policy::Stub> stub_;
};

using Stream = grpc::ClientReaderWriter<v1::FrontMessage, v1::PolicyMessage>;

v1::FrontMessage start_message() {
  v1::FrontMessage m;
  m.mutable_start()->set_session_id("G1");
  m.mutable_start()->mutable_client()->set_address("192.0.2.1");
  return m;
}

v1::FrontMessage rcpt(std::uint64_t seq, const std::string& address) {
  v1::FrontMessage m;
  auto* e = m.mutable_event();
  e->set_seq(seq);
  e->set_kind(v1::EVENT_RCPT);
  e->set_wants_reply(true);
  e->set_address(address);
  return m;
}

TEST_F(Policyd, SessionStreamNegotiatesAndDecides) {
  grpc::ClientContext ctx;
  std::unique_ptr<Stream> s = stub_->Session(&ctx);
  ASSERT_TRUE(s->Write(start_message()));
  v1::PolicyMessage m;
  ASSERT_TRUE(s->Read(&m));
  ASSERT_TRUE(m.has_opened());
  ASSERT_EQ(m.opened().capabilities().events_size(), 1);  // only hook.rcpt is defined
  EXPECT_EQ(m.opened().capabilities().events(0), v1::EVENT_RCPT);
  EXPECT_FALSE(m.opened().capabilities().wants_message());
  ASSERT_TRUE(s->Write(rcpt(1, "x@example.com")));
  ASSERT_TRUE(s->Read(&m));
  EXPECT_EQ(m.decision().seq(), 1u);
  EXPECT_EQ(m.decision().action(), v1::Decision::REPLY);
  EXPECT_EQ(m.decision().reply().code(), 550u);
  EXPECT_EQ(m.decision().reply().enhanced_code(), "5.1.1");
  EXPECT_EQ(m.decision().reply().lines(0), "no x@example.com");
  s->WritesDone();
  EXPECT_TRUE(s->Finish().ok());
}

TEST_F(Policyd, ServesHealthAndDrainsOnSigterm) {
  EXPECT_EQ(health(), HealthStatus::SERVING);
  grpc::ClientContext ctx;
  std::unique_ptr<Stream> s = stub_->Session(&ctx);
  ASSERT_TRUE(s->Write(start_message()));
  v1::PolicyMessage m;
  ASSERT_TRUE(s->Read(&m));

  ASSERT_EQ(kill(pid_, SIGTERM), 0);
  // Draining has begun once health stops answering SERVING.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (health() == HealthStatus::SERVING && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_NE(health(), HealthStatus::SERVING);
  // The open session is still served while policyd drains...
  ASSERT_TRUE(s->Write(rcpt(1, "during@drain")));
  ASSERT_TRUE(s->Read(&m));
  EXPECT_EQ(m.decision().reply().lines(0), "no during@drain");
  // ...a new session is refused...
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  std::unique_ptr<Stream> refused = stub_->Session(&ctx2);
  refused->Write(start_message());
  EXPECT_FALSE(refused->Read(&m));
  EXPECT_FALSE(refused->Finish().ok());
  // ...and policyd exits cleanly once the last session ended.
  EXPECT_EQ(wait_exit(std::chrono::seconds(1)), -1);
  s->WritesDone();
  EXPECT_TRUE(s->Finish().ok());
  EXPECT_EQ(wait_exit(std::chrono::seconds(15)), 0);
}

}  // namespace
