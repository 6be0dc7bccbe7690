// A real Connection (frontend/server) on a loopback socket, its policy
// session a FakePolicySession with scripted decisions: the seam's
// promises (the script's reply, --policy-failure, the --policy-timeout
// deadline, a disconnect) seen by an SMTP client, without policyd.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <asio.hpp>
#include <filesystem>
#include <memory>
#include <thread>

#include "frontend/server/connection.h"
#include "frontend/server/front_metrics.h"
#include "tests/unit/frontend/fake_policy_session.h"

using namespace mailhook;
using namespace mailhook::front;
using mailhook::front::testing::FakePolicyLink;
using mailhook::front::testing::PolicyScript;
using mailhook::front::testing::Scripted;

namespace {

// A blocking SMTP client with a receive timeout, so a test that goes wrong
// fails instead of hanging.
class Client {
 public:
  explicit Client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }

  void send(const std::string& bytes) { ASSERT_EQ(::write(fd_, bytes.data(), bytes.size()), ssize_t(bytes.size())); }
  // The next reply's last line ("550 5.7.1 no thanks"); "" when the
  // connection closed or nothing came within 5 s.
  std::string reply() {
    for (;;) {
      const std::size_t eol = buf_.find("\r\n");
      if (eol != std::string::npos) {
        std::string line = buf_.substr(0, eol);
        buf_.erase(0, eol + 2);
        if (line.size() < 4 || line[3] == ' ') return line;
        continue;  // a continuation line ("250-...")
      }
      char chunk[4096];
      const ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n <= 0) return "";
      buf_.append(chunk, std::size_t(n));
    }
  }
  // The server closed the connection (read gives EOF) within 5 s.
  bool closed_by_server() {
    char c;
    return buf_.empty() && ::read(fd_, &c, 1) == 0;
  }
  std::string say(const std::string& line) {
    send(line + "\r\n");
    return reply();
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

class FrontWithFakePolicy : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailhook-front-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_.hostname = "mx.test";
    config_.spool = dir_;
    config_.policy_timeout_ms = 2000;
    script_->capabilities.events = EventSet::all();
  }
  void TearDown() override {
    if (io_) io_->stop();
    if (thread_.joinable()) thread_.join();
    io_.reset();  // destroys a connection still in flight before its context
    ctx_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts the front for one connection; returns its port.
  std::uint16_t start() {
    ctx_.reset(new FrontContext{config_, link_, Spool(dir_), SmartHostConfig{}, metrics_, nullptr, CidrList{},
                                ConnectionLimiter(10, 10)});
    EXPECT_EQ(ctx_->spool.prepare(), "");
    io_ = std::make_unique<asio::io_context>();
    auto acceptor = std::make_shared<asio::ip::tcp::acceptor>(
        *io_, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    const std::uint16_t port = acceptor->local_endpoint().port();
    asio::co_spawn(
        *io_,
        [this, acceptor]() -> asio::awaitable<void> {
          auto socket = co_await acceptor->async_accept(asio::use_awaitable);
          co_await serve_connection(std::move(socket), *ctx_);
          served_ = true;
        },
        asio::detached);
    thread_ = std::thread([this] { io_->run(); });
    return port;
  }

  // Connects, reads the greeting and says EHLO.
  std::unique_ptr<Client> greeted() {
    auto c = std::make_unique<Client>(start());
    EXPECT_TRUE(c->connected());
    EXPECT_EQ(c->reply().substr(0, 3), "220");
    EXPECT_EQ(c->say("EHLO client.example").substr(0, 3), "250");
    return c;
  }

  std::string dir_;
  FrontConfig config_;
  std::shared_ptr<PolicyScript> script_ = std::make_shared<PolicyScript>();
  FakePolicyLink link_{script_};
  telemetry::Registry registry_;
  FrontMetrics metrics_{registry_};
  std::unique_ptr<FrontContext> ctx_;
  std::unique_ptr<asio::io_context> io_;
  std::thread thread_;
  std::atomic<bool> served_ = false;
};

const Reply kNoThanks{550, "5.7.1", {"no thanks"}};

}  // namespace

TEST_F(FrontWithFakePolicy, RefusedRcptGivesTheScriptsReply) {
  script_->on[EventKind::Rcpt] = Scripted::decide(Decision::respond(0, kNoThanks));
  auto c = greeted();
  EXPECT_EQ(c->say("MAIL FROM:<a@sender.example>").substr(0, 3), "250");
  EXPECT_EQ(c->say("RCPT TO:<b@rcpt.example>"), "550 5.7.1 no thanks");
  std::lock_guard l(script_->mu);
  ASSERT_FALSE(script_->asked.empty());
  EXPECT_EQ(script_->asked.back().kind, EventKind::Rcpt);
  EXPECT_EQ(script_->asked.back().address, "b@rcpt.example");
  EXPECT_TRUE(script_->asked.back().wants_reply);
}

TEST_F(FrontWithFakePolicy, PolicyFailureUnderTempfailGives451AtThatEventAndAsksNoMore) {
  script_->on[EventKind::Rcpt] = Scripted::fail();
  auto c = greeted();
  EXPECT_EQ(c->say("MAIL FROM:<a@sender.example>").substr(0, 3), "250");
  EXPECT_EQ(c->say("RCPT TO:<b@rcpt.example>"), "451 4.3.0 Policy service unavailable, try again later");
  EXPECT_EQ(c->say("RCPT TO:<c@rcpt.example>"), "451 4.3.0 Policy service unavailable, try again later");
  EXPECT_EQ(metrics_.policy_failures.value(), 1u);  // one trip, one count
  std::lock_guard l(script_->mu);
  EXPECT_EQ(script_->after_fault_calls, 0);  // a failed session is not asked again
  EXPECT_EQ(script_->asked.back().address, "b@rcpt.example");
}

TEST_F(FrontWithFakePolicy, AcceptModeContinuesWithDefaults) {
  config_.policy_failure = PolicyFailure::Accept;
  script_->on[EventKind::Mail] = Scripted::fail();
  script_->on[EventKind::Rcpt] = Scripted::decide(Decision::respond(0, kNoThanks));  // never asked: policyd is down
  auto c = greeted();
  EXPECT_EQ(c->say("MAIL FROM:<a@sender.example>"), "250 2.1.0 Ok");
  EXPECT_EQ(c->say("RCPT TO:<b@rcpt.example>"), "250 2.1.5 Ok");
  EXPECT_EQ(c->say("DATA").substr(0, 3), "354");
  const std::string queued = c->say("Subject: hi\r\n\r\nhello\r\n.");
  EXPECT_EQ(queued.rfind("250 2.0.0 Ok: queued as ", 0), 0u) << queued;
  EXPECT_EQ(metrics_.spooled.value(), 1u);
  EXPECT_EQ(metrics_.policy_failures.value(), 1u);
  std::lock_guard l(script_->mu);
  EXPECT_EQ(script_->asked.back().kind, EventKind::Mail);
}

TEST_F(FrontWithFakePolicy, DeadlinePassingGivesTheFailurePath) {
  config_.policy_timeout_ms = 150;  // --policy-timeout
  script_->on[EventKind::Rcpt] = Scripted::silent();
  auto c = greeted();
  EXPECT_EQ(c->say("MAIL FROM:<a@sender.example>").substr(0, 3), "250");
  EXPECT_EQ(c->say("RCPT TO:<b@rcpt.example>"), "451 4.3.0 Policy service unavailable, try again later");
  EXPECT_EQ(metrics_.policy_failures.value(), 1u);
  std::lock_guard l(script_->mu);
  // Each ask got --policy-timeout from its own start, no more.
  ASSERT_FALSE(script_->ask_budgets.empty());
  for (const auto budget : script_->ask_budgets) {
    EXPECT_LE(budget.count(), 150);
    EXPECT_GT(budget.count(), 0);
  }
}

TEST_F(FrontWithFakePolicy, DecisionWithDisconnectClosesAfterItsReply) {
  script_->on[EventKind::Mail] = Scripted::decide(Decision::respond(0, kNoThanks, /*close=*/true));
  auto c = greeted();
  EXPECT_EQ(c->say("MAIL FROM:<a@sender.example>"), "550 5.7.1 no thanks");
  EXPECT_TRUE(c->closed_by_server());
}

TEST_F(FrontWithFakePolicy, ConnectFailureUnderTempfailGives421AndCloses) {
  script_->connect = Scripted::fail();
  Client c(start());
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(c.reply(), "421 4.3.0 Policy service unavailable, try again later");
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_EQ(metrics_.policy_failures.value(), 1u);
}

TEST_F(FrontWithFakePolicy, ConnectFailureUnderAcceptGreetsAndAsksNothing) {
  config_.policy_failure = PolicyFailure::Accept;
  script_->connect = Scripted::silent();
  config_.policy_timeout_ms = 100;
  auto c = greeted();
  EXPECT_EQ(c->say("MAIL FROM:<a@sender.example>"), "250 2.1.0 Ok");
  std::lock_guard l(script_->mu);
  EXPECT_TRUE(script_->asked.empty());
  EXPECT_TRUE(script_->notified.empty());
}

TEST_F(FrontWithFakePolicy, ConnectDecisionRefusesWithItsReply) {
  script_->connect = Scripted::decide(Decision::respond(0, Reply{554, "5.7.1", {"not here"}}));
  Client c(start());
  EXPECT_EQ(c.reply(), "554 5.7.1 not here");
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(FrontWithFakePolicy, InvalidPolicyReplyGivesTheDefault) {
  script_->on[EventKind::Rcpt] = Scripted::decide(Decision::respond(0, Reply{354, "", {"wrong class"}}));
  auto c = greeted();
  EXPECT_EQ(c->say("MAIL FROM:<a@sender.example>").substr(0, 3), "250");
  EXPECT_EQ(c->say("RCPT TO:<b@rcpt.example>"), "250 2.1.5 Ok");
}

TEST_F(FrontWithFakePolicy, OnlyListenedEventsAreAsked) {
  script_->capabilities.events = EventSet{};
  script_->capabilities.events.add(EventKind::Rcpt);
  auto c = greeted();
  EXPECT_EQ(c->say("MAIL FROM:<a@sender.example>").substr(0, 3), "250");
  EXPECT_EQ(c->say("RCPT TO:<b@rcpt.example>").substr(0, 3), "250");
  EXPECT_EQ(script_->asked_kinds(), std::vector<EventKind>{EventKind::Rcpt});
}

TEST_F(FrontWithFakePolicy, EndOfMessageRefusalIsTheFinalReplyAndChunksArriveFirst) {
  script_->capabilities.wants_message = true;
  script_->on[EventKind::EndOfMessage] = Scripted::decide(Decision::respond(0, Reply{550, "5.7.1", {"spam"}}));
  auto c = greeted();
  EXPECT_EQ(c->say("MAIL FROM:<a@sender.example>").substr(0, 3), "250");
  EXPECT_EQ(c->say("RCPT TO:<b@rcpt.example>").substr(0, 3), "250");
  EXPECT_EQ(c->say("DATA").substr(0, 3), "354");
  EXPECT_EQ(c->say("Subject: hi\r\n\r\n..dotted\r\n."), "550 5.7.1 spam");
  EXPECT_EQ(metrics_.spooled.value(), 0u);
  std::lock_guard l(script_->mu);
  std::string chunks;
  for (const SessionEvent& e : script_->notified) {
    if (e.kind == EventKind::MessageChunk) chunks += e.chunk;
  }
  EXPECT_EQ(chunks, "Subject: hi\r\n\r\n.dotted\r\n");  // dot-unstuffed (RFC 5321 4.5.2)
  EXPECT_EQ(script_->asked.back().kind, EventKind::EndOfMessage);
}

TEST_F(FrontWithFakePolicy, SessionEndTellsPolicydAndClosesTheSession) {
  auto c = greeted();
  EXPECT_EQ(c->say("QUIT").substr(0, 3), "221");
  EXPECT_TRUE(c->closed_by_server());
  // The connection notifies Close and closes its policy session as it ends.
  for (int i = 0; i < 500 && !served_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(served_);
  std::lock_guard l(script_->mu);
  EXPECT_TRUE(script_->closed);
  EXPECT_TRUE(script_->aborted);  // the session object is released with the connection
  ASSERT_FALSE(script_->notified.empty());
  EXPECT_EQ(script_->notified.back().kind, EventKind::Close);
}

// RFC 2920 pipelining: the events of commands already read go ahead in one
// batch; the script sees what it would see unpipelined.
namespace {

const std::string kPipelined =
    "MAIL FROM:<a@sender.example>\r\nRCPT TO:<b1@rcpt.example>\r\nRCPT TO:<b2@rcpt.example>\r\n"
    "RCPT TO:<b3@rcpt.example>\r\nDATA\r\n";

std::vector<EventKind> kinds_of(const std::vector<SessionEvent>& events) {
  std::vector<EventKind> out;
  for (const SessionEvent& e : events) out.push_back(e.kind);
  return out;
}

}  // namespace

// Greeted, with EHLO's ask forgotten: the tests below count MAIL onwards.
#define greeted_quietly() \
  [this] {                                 \
    auto c = greeted();                    \
    std::lock_guard l(script_->mu);        \
    script_->asked.clear();                \
    return c;                              \
  }()

namespace {

std::vector<std::string> replies(Client& c, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(c.reply().substr(0, 3));
  return out;
}

}  // namespace

TEST_F(FrontWithFakePolicy, PipelinedMailRcptDataGoInOneBatch) {
  script_->capabilities.honours_speculative = true;
  auto c = greeted_quietly();
  c->send(kPipelined);
  EXPECT_EQ(replies(*c, 5), (std::vector<std::string>{"250", "250", "250", "250", "354"}));
  EXPECT_EQ(c->say("Subject: hi\r\n\r\nbody\r\n.").substr(0, 3), "250");
  std::lock_guard l(script_->mu);
  ASSERT_EQ(script_->frames.size(), 1u);
  const std::vector<SessionEvent>& frame = script_->frames[0];
  EXPECT_EQ(kinds_of(frame), (std::vector<EventKind>{EventKind::Mail, EventKind::Rcpt, EventKind::Rcpt,
                                                     EventKind::Rcpt, EventKind::Data}));
  EXPECT_FALSE(frame[0].speculative);
  for (std::size_t i = 1; i < frame.size(); ++i) EXPECT_TRUE(frame[i].speculative) << i;
  EXPECT_EQ(metrics_.policy_sent_ahead.value(), 4u);
  // What the script saw: each command's own event, as if asked one by one.
  ASSERT_EQ(script_->asked.size(), 6u);  // MAIL, 3 RCPT, DATA, end of message
  for (std::size_t i = 0; i + 1 < script_->asked.size(); ++i) {
    EXPECT_EQ(script_->asked[i].seq, script_->asked[0].seq + i);
  }
  EXPECT_EQ(script_->asked[2].address, "b2@rcpt.example");
  EXPECT_EQ(script_->asked[1].transaction_id, script_->asked[0].transaction_id);
  EXPECT_FALSE(script_->asked[0].transaction_id.empty());
  EXPECT_EQ(script_->asked[4].recipients,
            (std::vector<std::string>{"b1@rcpt.example", "b2@rcpt.example", "b3@rcpt.example"}));
  EXPECT_EQ(script_->asked[4].sender, "a@sender.example");
  EXPECT_EQ(script_->skipped, 0);
}

TEST_F(FrontWithFakePolicy, RefusedPipelinedMailGives503sWithoutAskingTheRcpts) {
  script_->capabilities.honours_speculative = true;
  script_->on[EventKind::Mail] = Scripted::decide(Decision::respond(0, kNoThanks));
  auto c = greeted_quietly();
  c->send(kPipelined);
  EXPECT_EQ(replies(*c, 5), (std::vector<std::string>{"550", "503", "503", "503", "503"}));
  {
    std::lock_guard l(script_->mu);
    ASSERT_EQ(script_->frames.size(), 1u);
    EXPECT_EQ(script_->frames[0].size(), 5u);
    EXPECT_EQ(kinds_of(script_->asked), std::vector<EventKind>{EventKind::Mail});  // no hook.rcpt, no hook.data
  }
  // The next ask consumes the skipped answers first, in order.
  EXPECT_EQ(c->say("MAIL FROM:<c@sender.example>"), "550 5.7.1 no thanks");
  std::lock_guard l(script_->mu);
  EXPECT_EQ(script_->skipped, 4);
  EXPECT_EQ(metrics_.policy_skipped.value(), 4u);
  EXPECT_EQ(kinds_of(script_->asked), (std::vector<EventKind>{EventKind::Mail, EventKind::Mail}));
  EXPECT_EQ(script_->asked[1].address, "c@sender.example");
}

TEST_F(FrontWithFakePolicy, RefusedSecondPipelinedRcptStillAsksTheThird) {
  script_->capabilities.honours_speculative = true;
  script_->on_address["b2@rcpt.example"] = Scripted::decide(Decision::respond(0, kNoThanks));
  auto c = greeted_quietly();
  c->send(kPipelined);
  EXPECT_EQ(replies(*c, 5), (std::vector<std::string>{"250", "250", "550", "250", "354"}));
  EXPECT_EQ(c->say("Subject: hi\r\n\r\nbody\r\n.").substr(0, 3), "250");
  std::lock_guard l(script_->mu);
  EXPECT_EQ(kinds_of(script_->asked), (std::vector<EventKind>{EventKind::Mail, EventKind::Rcpt, EventKind::Rcpt,
                                                              EventKind::Rcpt, EventKind::Data,
                                                              EventKind::EndOfMessage}));
  EXPECT_EQ(script_->asked[3].address, "b3@rcpt.example");
  EXPECT_EQ(script_->asked[4].recipients, (std::vector<std::string>{"b1@rcpt.example", "b3@rcpt.example"}));
  // The third RCPT and DATA went again in a second batch after the refusal.
  ASSERT_EQ(script_->frames.size(), 2u);
  EXPECT_EQ(kinds_of(script_->frames[1]), (std::vector<EventKind>{EventKind::Rcpt, EventKind::Data}));
  EXPECT_EQ(script_->skipped, 2);
}

TEST_F(FrontWithFakePolicy, PipelineDepthBoundsTheEventsSentAhead) {
  script_->capabilities.honours_speculative = true;
  config_.policy_pipeline_depth = 2;
  auto c = greeted_quietly();
  c->send(kPipelined);
  EXPECT_EQ(replies(*c, 5), (std::vector<std::string>{"250", "250", "250", "250", "354"}));
  std::lock_guard l(script_->mu);
  ASSERT_EQ(script_->frames.size(), 2u);
  EXPECT_EQ(script_->frames[0].size(), 3u);  // MAIL and 2 ahead
  EXPECT_EQ(kinds_of(script_->frames[1]), (std::vector<EventKind>{EventKind::Rcpt, EventKind::Data}));
  EXPECT_EQ(metrics_.policy_sent_ahead.value(), 3u);
  EXPECT_EQ(script_->asked.size(), 5u);
}

TEST_F(FrontWithFakePolicy, NothingGoesAheadWithDepthZeroOrWithoutTheCapability) {
  config_.policy_pipeline_depth = 0;
  script_->capabilities.honours_speculative = true;
  auto c = greeted_quietly();
  c->send(kPipelined);
  EXPECT_EQ(replies(*c, 5), (std::vector<std::string>{"250", "250", "250", "250", "354"}));
  std::lock_guard l(script_->mu);
  EXPECT_TRUE(script_->frames.empty());
  EXPECT_EQ(script_->asked.size(), 5u);
}

TEST_F(FrontWithFakePolicy, NothingGoesAheadToAPolicydThatDoesNotHonourSpeculation) {
  auto c = greeted_quietly();  // capabilities.honours_speculative false: an older policyd
  c->send(kPipelined);
  EXPECT_EQ(replies(*c, 5), (std::vector<std::string>{"250", "250", "250", "250", "354"}));
  std::lock_guard l(script_->mu);
  EXPECT_TRUE(script_->frames.empty());
  EXPECT_EQ(script_->asked.size(), 5u);
}

TEST_F(FrontWithFakePolicy, LookAheadStopsAtARcptTheRecipientLimitRefuses) {
  script_->capabilities.honours_speculative = true;
  config_.max_recipients = 2;
  auto c = greeted_quietly();
  c->send(kPipelined);
  EXPECT_EQ(replies(*c, 5), (std::vector<std::string>{"250", "250", "250", "452", "354"}));
  std::lock_guard l(script_->mu);
  ASSERT_GE(script_->frames.size(), 1u);
  EXPECT_EQ(kinds_of(script_->frames[0]), (std::vector<EventKind>{EventKind::Mail, EventKind::Rcpt, EventKind::Rcpt}));
}
