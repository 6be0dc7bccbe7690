// The shared Sessions stream (issue 22) against the real policyd binary
// over loopback gRPC: many SMTP sessions tagged on one stream, each in
// order; per-session bounds at their edges (--max-pending-events ends only
// the session over its window, --max-sessions-per-stream refuses the next
// start); one session or one stream ending leaves the others alone; Drain
// on SIGTERM and after --max-connection-age. Stops policyd by PID.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "link_support.h"
#include "mailhook/v1/session.grpc.pb.h"

namespace {

namespace v1 = mailhook::v1;
using namespace link_support;
using Mux = grpc::ClientReaderWriter<v1::FrontFrame, v1::PolicyFrame>;

v1::FrontTagged start_of(std::uint64_t id, const std::string& address) {
  v1::FrontTagged m;
  m.set_session(id);
  m.mutable_start()->set_session_id("S" + std::to_string(id));
  m.mutable_start()->mutable_client()->set_address(address);
  return m;
}

v1::FrontTagged event_of(std::uint64_t id, v1::EventKind kind, std::uint64_t seq, bool reply,
                         const std::string& argument = "") {
  v1::FrontTagged m;
  m.set_session(id);
  auto* e = m.mutable_event();
  e->set_seq(seq);
  e->set_kind(kind);
  e->set_wants_reply(reply);
  e->set_argument(argument);
  e->set_transaction_id("T" + std::to_string(id));
  return m;
}

v1::FrontTagged chunk_of(std::uint64_t id, std::uint64_t seq, std::string bytes) {
  v1::FrontTagged m = event_of(id, v1::EVENT_MESSAGE_CHUNK, seq, false);
  m.mutable_event()->set_chunk(std::move(bytes));
  return m;
}

v1::FrontTagged end_of(std::uint64_t id) {
  v1::FrontTagged m;
  m.set_session(id);
  m.mutable_end();
  return m;
}

// A front's side of one Sessions stream, synchronous: writes frames, keeps
// every tagged message read so a test can wait for the one it needs.
class MuxClient {
 public:
  explicit MuxClient(v1::Policy::Stub& stub) {
    // A hang fails the test instead of blocking it.
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stream_ = stub.Sessions(&ctx_);
  }
  bool write(const std::vector<v1::FrontTagged>& messages) {
    v1::FrontFrame f;
    for (const auto& m : messages) *f.add_messages() = m;
    return stream_->Write(f);
  }
  // The first message not taken yet that `match` accepts, reading frames
  // as needed; nullopt when the stream ended first.
  std::optional<v1::PolicyTagged> take(const std::function<bool(const v1::PolicyTagged&)>& match) {
    for (std::size_t i = 0;; ++i) {
      while (i >= seen_.size()) {
        if (!read_frame()) return std::nullopt;
      }
      if (!taken_.count(i) && match(seen_[i])) {
        taken_.insert(i);
        return seen_[i];
      }
    }
  }
  std::optional<v1::PolicyTagged> decision(std::uint64_t id) {
    return take([id](const v1::PolicyTagged& m) { return m.session() == id && (m.has_decision() || m.has_ended()); });
  }
  std::optional<v1::PolicyTagged> opened(std::uint64_t id) {
    return take([id](const v1::PolicyTagged& m) { return m.session() == id && (m.has_opened() || m.has_ended()); });
  }
  // Reads until a Drain came; false when the stream ended first.
  bool await_drain() {
    while (drain_.empty()) {
      if (!read_frame()) return false;
    }
    return true;
  }
  // The highest credit seen for a session (PolicyTagged.handled).
  std::uint64_t credit(std::uint64_t id) const {
    const auto it = credit_.find(id);
    return it == credit_.end() ? 0 : it->second;
  }
  bool read_frame() {
    v1::PolicyFrame f;
    if (!stream_->Read(&f)) return false;
    ++frames_;
    if (f.has_limits()) limits_ = f.limits();
    if (f.has_drain()) drain_ = f.drain().reason();
    for (const auto& m : f.messages()) {
      seen_.push_back(m);
      credit_[m.session()] = std::max(credit_[m.session()], m.handled());
    }
    return true;
  }
  grpc::Status finish() {
    stream_->WritesDone();
    v1::PolicyFrame f;
    while (stream_->Read(&f)) {
    }
    return stream_->Finish();
  }
  void cancel() { ctx_.TryCancel(); }
  const std::vector<v1::PolicyTagged>& seen() const { return seen_; }
  const std::optional<v1::StreamLimits>& limits() const { return limits_; }
  const std::string& drain_reason() const { return drain_; }
  int frames() const { return frames_; }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<Mux> stream_;
  std::vector<v1::PolicyTagged> seen_;
  std::set<std::size_t> taken_;
  std::map<std::uint64_t, std::uint64_t> credit_;
  std::optional<v1::StreamLimits> limits_;
  std::string drain_;
  int frames_ = 0;
};

std::string reply_line(const v1::PolicyTagged& m) {
  return m.decision().reply().lines_size() ? m.decision().reply().lines(0) : "";
}

class PolicydSessions : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/mailhook-mux-XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    dir_ = templ;
    fs::create_directories(dir_ / "spool");
    target_ = "127.0.0.1:" + std::to_string(free_port());
  }
  void TearDown() override {
    processes_.clear();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  PolicydProcess& start(const std::string& lua, std::vector<std::string> extra = {},
                        const std::string& drain_timeout = "1") {
    const fs::path script = dir_ / ("policy" + std::to_string(processes_.size()) + ".lua");
    std::ofstream(script) << lua;
    std::vector<std::string> args = {"--listen", target_, "--script", script.string(), "--log-stderr",
                                     "--ptr-lookup", "no", "--spool-dir", (dir_ / "spool").string(),
                                     "--drain-timeout", drain_timeout};
    if (std::find(extra.begin(), extra.end(), "--workers") == extra.end()) {
      extra.insert(extra.end(), {"--workers", "1"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    processes_.push_back(std::make_unique<PolicydProcess>(
        args, dir_ / ("policyd-" + std::to_string(processes_.size()) + ".log")));
    return *processes_.back();
  }
  std::unique_ptr<v1::Policy::Stub> stub() {
    return v1::Policy::NewStub(grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
  }

  fs::path dir_;
  std::string target_;
  std::vector<std::unique_ptr<PolicydProcess>> processes_;
};

// Each session's HELO names are kept per client address; NOOP answers them
// joined, so any reordering or mix-up between sessions shows in the reply.
constexpr const char* kJoinScript =
    "seen = {}\n"
    "function hook.helo(name) seen[client.address] = (seen[client.address] or '') .. name end\n"
    "function hook.noop() return '250 2.0.0 ' .. client.address .. ':' .. (seen[client.address] or '') .. '\\r\\n' end\n";

// 50 sessions on one stream, their events interleaved frame by frame: every
// session gets its own answers, in order, and the first frame says the limits.
TEST_F(PolicydSessions, ManySessionsOnOneStreamKeepTheirOwnOrder) {
  auto& p = start(kJoinScript, {"--max-pending-events", "8"});
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto s = stub();
  MuxClient c(*s);
  constexpr int kSessions = 50;
  std::vector<v1::FrontTagged> starts;
  for (int i = 1; i <= kSessions; ++i) starts.push_back(start_of(i, "192.0.2." + std::to_string(i)));
  ASSERT_TRUE(c.write(starts));
  for (int i = 1; i <= kSessions; ++i) {
    auto o = c.opened(i);
    ASSERT_TRUE(o && o->has_opened()) << i;
  }
  ASSERT_TRUE(c.limits().has_value());
  EXPECT_EQ(c.limits()->max_pending_events(), 8u);
  EXPECT_EQ(c.limits()->max_sessions(), 10000u);
  EXPECT_EQ(c.limits()->max_frame_bytes(), 4u << 20);
  for (int k = 1; k <= 5; ++k) {  // five frames, each one event of every session
    std::vector<v1::FrontTagged> frame;
    for (int i = 1; i <= kSessions; ++i) frame.push_back(event_of(i, v1::EVENT_HELO, k, false, "h" + std::to_string(k)));
    ASSERT_TRUE(c.write(frame));
  }
  std::vector<v1::FrontTagged> noops;
  for (int i = kSessions; i >= 1; --i) noops.push_back(event_of(i, v1::EVENT_NOOP, 6, true));
  ASSERT_TRUE(c.write(noops));
  for (int i = 1; i <= kSessions; ++i) {
    auto d = c.decision(i);
    ASSERT_TRUE(d && d->has_decision()) << i;
    EXPECT_EQ(d->decision().seq(), 6u);
    EXPECT_EQ(reply_line(*d), "192.0.2." + std::to_string(i) + ":h1h2h3h4h5");
    EXPECT_EQ(d->handled(), 6u);  // the credit counts the NOOP too
  }
  // Batched: fewer frames than the 100 answers.
  EXPECT_LT(c.frames(), 2 * kSessions);
  std::vector<v1::FrontTagged> ends;
  for (int i = 1; i <= kSessions; ++i) ends.push_back(end_of(i));
  ASSERT_TRUE(c.write(ends));
  EXPECT_TRUE(c.finish().ok());
}

// Two workers, one stream: a worker that answered one of its sessions and
// then runs a long hook for another still owes that stream a write. The
// other worker's answer must not wait for it: each worker starts the
// writes of what it answered. Session 1 (worker 1) answers a NOOP and then
// spends 1.5 s of CPU on HELP; session 2 (worker 2) is answered first.
TEST_F(PolicydSessions, AWorkerBusyInAHookHoldsNoOtherWorkersAnswers) {
  auto& p = start(
      "function hook.noop() return '250 2.0.0 ' .. client.address .. ' fast\\r\\n' end\n"
      "function hook.help()\n"
      "  local t = os.clock() while os.clock() - t < 1.5 do end\n"
      "  return '214 2.0.0 ' .. client.address .. ' slow\\r\\n'\n"
      "end\n",
      {"--workers", "2", "--log-level", "debug"});
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto s = stub();
  MuxClient c(*s);
  // Opened together: the least busy worker takes each, so one apiece.
  ASSERT_TRUE(c.write({start_of(1, "192.0.2.1"), start_of(2, "192.0.2.2")}));
  for (int i = 1; i <= 2; ++i) {
    auto o = c.opened(i);
    ASSERT_TRUE(o && o->has_opened()) << i;
  }
  ASSERT_TRUE(c.write({event_of(1, v1::EVENT_NOOP, 1, true), event_of(1, v1::EVENT_HELP, 2, true)}));
  // Session 2 asks once worker 1 answered session 1's NOOP (its debug line)
  // and so owes the stream a write while it runs HELP.
  ASSERT_TRUE(wait_until([&] { return p.log().find("session=S1 script=") != std::string::npos; },
                         std::chrono::seconds(10)))
      << p.log();
  ASSERT_TRUE(c.write({event_of(2, v1::EVENT_NOOP, 1, true)}));
  auto d = c.decision(2);
  ASSERT_TRUE(d && d->has_decision());
  EXPECT_EQ(reply_line(*d), "192.0.2.2 fast");
  for (const auto& m : c.seen()) {
    EXPECT_FALSE(m.session() == 1 && m.has_decision() && m.decision().seq() == 2)
        << "session 2's answer waited for session 1's slow hook";
  }
  auto slow = c.decision(1);  // the fast one
  ASSERT_TRUE(slow && slow->has_decision());
  EXPECT_EQ(reply_line(*slow), "192.0.2.1 fast");
  slow = c.decision(1);
  ASSERT_TRUE(slow && slow->has_decision());
  EXPECT_EQ(reply_line(*slow), "192.0.2.1 slow");
  ASSERT_TRUE(c.write({end_of(1), end_of(2)}));
  EXPECT_TRUE(c.finish().ok());
}

// --max-pending-events per session, at its edge: session 1 is stuck in a DNS
// wait (a nameserver that never answers). Its window's worth of events is
// held; one more ends session 1 only, with the reason; session 2 on the same
// stream is answered before and after.
TEST_F(PolicydSessions, ASessionOverItsWindowIsEndedAndTheOthersGoOn) {
  int silent_port = 0;
  const int silent_dns = silent_udp_socket(silent_port);  // bound, never read
  ASSERT_GE(silent_dns, 0);
  const int metrics_port = free_port();
  auto& p = start(
      "function hook.mail(s) dns.query(dns.class.IN, dns.type.A, 'never.example.test') dns.wait(true) end\n"
      "function hook.content(c) end\n"
      "function hook.noop() return '250 2.0.0 alive\\r\\n' end\n",
      {"--max-pending-events", "3", "--dns-server", "127.0.0.1:" + std::to_string(silent_port),
       "--dns-timeout", "60000", "--hook-timeout", "120000", "--metrics",
       "127.0.0.1:" + std::to_string(metrics_port)});
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto s = stub();
  MuxClient c(*s);
  ASSERT_TRUE(c.write({start_of(1, "192.0.2.1"), start_of(2, "192.0.2.2")}));
  ASSERT_TRUE(c.opened(1) && c.opened(2));
  // Session 1: MAIL (stuck) and two chunks: exactly the window of 3.
  ASSERT_TRUE(c.write({event_of(1, v1::EVENT_MAIL, 1, false), chunk_of(1, 2, "a"), chunk_of(1, 3, "b")}));
  ASSERT_TRUE(c.write({event_of(2, v1::EVENT_NOOP, 1, true)}));
  auto d = c.decision(2);
  ASSERT_TRUE(d && d->has_decision());
  EXPECT_EQ(reply_line(*d), "alive");
  // Answers leave in the order policyd read: nothing ended session 1 before.
  for (const auto& m : c.seen()) EXPECT_FALSE(m.has_ended()) << m.DebugString();
  // One past the window.
  ASSERT_TRUE(c.write({chunk_of(1, 4, "c"), event_of(2, v1::EVENT_NOOP, 2, true)}));
  auto ended = c.decision(1);
  ASSERT_TRUE(ended && ended->has_ended());
  EXPECT_EQ(ended->ended().reason(), "over --max-pending-events (3)");
  d = c.decision(2);
  ASSERT_TRUE(d && d->has_decision());
  EXPECT_EQ(d->decision().seq(), 2u);
  EXPECT_TRUE(wait_until([&] { return p.log().find("session=S1 ended by policyd: over --max-pending-events (3)") !=
                                      std::string::npos; },
                         std::chrono::seconds(5)))
      << p.log();
  // Later messages of the ended session are dropped; session 2 goes on.
  ASSERT_TRUE(c.write({chunk_of(1, 5, "d"), event_of(2, v1::EVENT_NOOP, 3, true)}));
  d = c.decision(2);
  ASSERT_TRUE(d && d->has_decision());
  EXPECT_EQ(d->decision().seq(), 3u);
  ASSERT_TRUE(c.write({end_of(2)}));
  EXPECT_TRUE(c.finish().ok());
  close(silent_dns);
}

// Credit: a session streaming a message larger than its window goes
// through when it sends only as far as policyd's `handled` allows.
TEST_F(PolicydSessions, ChunksPacedByTheCreditAllGetThrough) {
  auto& p = start("bytes = 0\nfunction hook.content(c) bytes = bytes + #c end\n"
                  "function hook.noop() return '250 2.0.0 bytes=' .. bytes .. '\\r\\n' end\n",
                  {"--max-pending-events", "4"});
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto s = stub();
  MuxClient c(*s);
  ASSERT_TRUE(c.write({start_of(1, "192.0.2.1")}));
  ASSERT_TRUE(c.opened(1));
  ASSERT_TRUE(c.write({event_of(1, v1::EVENT_MAIL, 1, false)}));
  std::uint64_t sent = 1;
  constexpr int kChunks = 40;
  for (int i = 0; i < kChunks; ++i) {
    while (sent - c.credit(1) >= 4) ASSERT_TRUE(c.read_frame());  // window full: wait for credit
    ASSERT_TRUE(c.write({chunk_of(1, ++sent, std::string(998, 'x') + "\r\n")}));  // complete lines
  }
  while (sent - c.credit(1) >= 4) ASSERT_TRUE(c.read_frame());
  ASSERT_TRUE(c.write({event_of(1, v1::EVENT_NOOP, ++sent, true)}));
  auto d = c.decision(1);
  ASSERT_TRUE(d && d->has_decision());
  EXPECT_EQ(reply_line(*d), "bytes=40000");
  for (const auto& m : c.seen()) EXPECT_FALSE(m.has_ended()) << m.DebugString();
  ASSERT_TRUE(c.write({end_of(1)}));
  EXPECT_TRUE(c.finish().ok());
}

// --max-sessions-per-stream at its edge: the limit opens, one more is
// ended; when a session ends its place is free again.
TEST_F(PolicydSessions, AStartPastMaxSessionsPerStreamIsRefused) {
  auto& p = start(kJoinScript, {"--max-sessions-per-stream", "2"});
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto s = stub();
  MuxClient c(*s);
  ASSERT_TRUE(c.write({start_of(1, "192.0.2.1"), start_of(2, "192.0.2.2"), start_of(3, "192.0.2.3")}));
  auto o1 = c.opened(1), o2 = c.opened(2), o3 = c.opened(3);
  ASSERT_TRUE(o1 && o2 && o3);
  EXPECT_TRUE(o1->has_opened());
  EXPECT_TRUE(o2->has_opened());
  ASSERT_TRUE(o3->has_ended());
  EXPECT_EQ(o3->ended().reason(), "over --max-sessions-per-stream (2)");
  EXPECT_TRUE(wait_until([&] { return p.log().find("session=S3 refused: 2 sessions open on its stream "
                                                   "(--max-sessions-per-stream)") != std::string::npos; },
                         std::chrono::seconds(5)))
      << p.log();
  ASSERT_TRUE(c.write({end_of(1), start_of(4, "192.0.2.4"), event_of(4, v1::EVENT_NOOP, 1, true)}));
  auto o4 = c.opened(4);
  ASSERT_TRUE(o4 && o4->has_opened());
  auto d = c.decision(4);
  ASSERT_TRUE(d && d->has_decision());
  EXPECT_EQ(reply_line(*d), "192.0.2.4:");
  // Another stream has its own count.
  MuxClient other(*s);
  ASSERT_TRUE(other.write({start_of(1, "192.0.2.5"), start_of(2, "192.0.2.6")}));
  EXPECT_TRUE(other.opened(1)->has_opened());
  EXPECT_TRUE(other.opened(2)->has_opened());
  ASSERT_TRUE(other.write({end_of(1), end_of(2)}));
  EXPECT_TRUE(other.finish().ok());
  ASSERT_TRUE(c.write({end_of(2), end_of(4)}));
  EXPECT_TRUE(c.finish().ok());
}

// A frame is at most 4 MiB (StreamLimits.max_frame_bytes, gRPC's receive
// cap): exactly that is served; one byte more ends the stream.
TEST_F(PolicydSessions, AFrameOver4MiBEndsItsStream) {
  auto& p = start("function hook.noop() return '250 2.0.0 alive\\r\\n' end\n");
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto s = stub();
  for (const std::size_t size : {std::size_t{4} << 20, (std::size_t{4} << 20) + 1}) {
    SCOPED_TRACE(size);
    MuxClient c(*s);
    ASSERT_TRUE(c.write({start_of(1, "192.0.2.1")}));
    ASSERT_TRUE(c.opened(1));
    v1::FrontFrame big;
    *big.add_messages() = chunk_of(1, 1, std::string((4 << 20) - 64, 'x'));
    auto* bytes = big.mutable_messages(0)->mutable_event()->mutable_chunk();
    while (big.ByteSizeLong() < size) bytes->push_back('x');
    while (big.ByteSizeLong() > size) bytes->pop_back();
    ASSERT_EQ(big.ByteSizeLong(), size);
    std::vector<v1::FrontTagged> one(big.messages().begin(), big.messages().end());
    c.write(one);
    c.write({event_of(1, v1::EVENT_NOOP, 2, true)});
    auto d = c.decision(1);
    if (size == std::size_t{4} << 20) {
      ASSERT_TRUE(d && d->has_decision());
      EXPECT_EQ(reply_line(*d), "alive");
      ASSERT_TRUE(c.write({end_of(1)}));
      EXPECT_TRUE(c.finish().ok());
    } else {
      EXPECT_FALSE(d.has_value());
      EXPECT_EQ(c.finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    }
  }
  EXPECT_TRUE(p.alive());
}

// A broken stream fails only its own sessions; a session the front ends
// mid-transaction leaves its neighbours alone.
TEST_F(PolicydSessions, EndingASessionOrAStreamLeavesTheOthersAlone) {
  auto& p = start(kJoinScript);
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto s = stub();
  MuxClient a(*s), b(*s);
  ASSERT_TRUE(a.write({start_of(1, "192.0.2.1")}));
  ASSERT_TRUE(b.write({start_of(1, "192.0.2.2"), start_of(2, "192.0.2.3")}));
  ASSERT_TRUE(a.opened(1) && b.opened(1) && b.opened(2));
  ASSERT_TRUE(b.write({event_of(1, v1::EVENT_HELO, 1, false, "x"), event_of(2, v1::EVENT_HELO, 1, false, "y"),
                       end_of(1)}));
  a.cancel();  // the stream breaks with its session open
  ASSERT_TRUE(b.write({event_of(2, v1::EVENT_NOOP, 2, true)}));
  auto d = b.decision(2);
  ASSERT_TRUE(d && d->has_decision());
  EXPECT_EQ(reply_line(*d), "192.0.2.3:y");
  ASSERT_TRUE(b.write({end_of(2)}));
  EXPECT_TRUE(b.finish().ok());
  EXPECT_TRUE(p.alive());
}

// SIGTERM: every shared stream is told to drain; its open session is still
// answered, and the stream ends cleanly when the front half-closes.
TEST_F(PolicydSessions, SigtermDrainsSharedStreamsWithoutCuttingSessions) {
  auto& p = start(kJoinScript, {}, "20");
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto s = stub();
  MuxClient c(*s);
  ASSERT_TRUE(c.write({start_of(1, "192.0.2.1")}));
  ASSERT_TRUE(c.opened(1));
  p.signal(SIGTERM);
  ASSERT_TRUE(c.await_drain()) << p.log();
  EXPECT_EQ(c.drain_reason(), "shutting down");
  ASSERT_TRUE(c.write({event_of(1, v1::EVENT_HELO, 1, false, "late"), event_of(1, v1::EVENT_NOOP, 2, true)}));
  auto d = c.decision(1);
  ASSERT_TRUE(d && d->has_decision());
  EXPECT_EQ(reply_line(*d), "192.0.2.1:late");
  ASSERT_TRUE(c.write({end_of(1)}));
  EXPECT_TRUE(c.finish().ok());
  EXPECT_EQ(p.wait_exit(std::chrono::seconds(20)), 0) << p.log();
}

// --max-connection-age: a stream older than it is drained (rebalancing
// like GOAWAY, without cutting the sessions on it).
TEST_F(PolicydSessions, AStreamOlderThanMaxConnectionAgeIsDrained) {
  auto& p = start(kJoinScript, {"--max-connection-age", "1"});
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto s = stub();
  MuxClient c(*s);
  ASSERT_TRUE(c.write({start_of(1, "192.0.2.1")}));
  ASSERT_TRUE(c.opened(1));
  std::uint64_t seq = 0;
  // The age is checked when the front sends: a NOOP every 100 ms until it
  // says so, at most 10 s.
  EXPECT_TRUE(wait_until([&] {
    if (!c.write({event_of(1, v1::EVENT_NOOP, ++seq, true)}) || !c.decision(1)) return true;
    return !c.drain_reason().empty();
  }, std::chrono::seconds(10)));
  EXPECT_EQ(c.drain_reason(), "max-connection-age");
  ASSERT_TRUE(c.write({event_of(1, v1::EVENT_NOOP, ++seq, true)}));
  auto d = c.decision(1);
  ASSERT_TRUE(d && d->has_decision());
  EXPECT_EQ(d->decision().seq(), seq);
  ASSERT_TRUE(c.write({end_of(1)}));
  EXPECT_TRUE(c.finish().ok());
}

}  // namespace
