// The front <-> policyd gRPC link as an attacker who reaches the port sees
// it (THREATS.md): no wire field becomes a file path, a stream that only
// writes is held by flow control, a busy port or socket is a start-up
// error, and with mTLS configured a peer without the right client
// certificate opens nothing. Starts the real binary (MAILHOOK_POLICYD in
// the environment overrides the built one) and stops it by PID.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "link_support.h"
#include "mailhook/v1/session.grpc.pb.h"

namespace {

namespace v1 = mailhook::v1;
namespace fs = std::filesystem;
using Stream = grpc::ClientReaderWriter<v1::FrontMessage, v1::PolicyMessage>;
using Clock = std::chrono::steady_clock;
using namespace link_support;

class PolicydLink : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/mailhook-link-XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    dir_ = templ;
    spool_ = dir_ / "spool";
    fs::create_directories(spool_);
  }
  void TearDown() override {
    processes_.clear();  // killed before their files go
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path script(const std::string& text) {
    const fs::path p = dir_ / ("policy" + std::to_string(processes_.size()) + ".lua");
    std::ofstream(p) << text;
    return p;
  }

  // Starts policyd on `listen` with `lua` and extra flags.
  PolicydProcess& start(const std::string& listen, const std::string& lua, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--listen", listen, "--script", script(lua).string(), "--log-stderr",
                                     "--workers", "1", "--ptr-lookup", "no", "--spool-dir", spool_.string(),
                                     "--drain-timeout", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    processes_.push_back(std::make_unique<PolicydProcess>(
        args, dir_ / ("policyd-" + std::to_string(processes_.size()) + ".log")));
    return *processes_.back();
  }

  // Certificates of the link from deploy/tls/make-link-certs.sh into dir/name.
  fs::path make_certs(const std::string& name) {
    const fs::path out = dir_ / name;
    const std::string cmd = std::string(MAILHOOK_SOURCE_DIR) + "/deploy/tls/make-link-certs.sh '" + out.string() +
                            "' localhost 127.0.0.1 >/dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return out;
  }

  fs::path dir_, spool_;
  std::vector<std::unique_ptr<PolicydProcess>> processes_;
};

v1::FrontMessage start_message() {
  v1::FrontMessage m;
  m.mutable_start()->set_session_id("L1");
  m.mutable_start()->mutable_client()->set_address("192.0.2.1");
  return m;
}

v1::FrontMessage event(v1::EventKind kind, std::uint64_t seq, const std::string& transaction, bool reply) {
  v1::FrontMessage m;
  auto* e = m.mutable_event();
  e->set_seq(seq);
  e->set_kind(kind);
  e->set_wants_reply(reply);
  e->set_transaction_id(transaction);
  return m;
}

v1::FrontMessage chunk(std::uint64_t seq, const std::string& transaction, std::string bytes) {
  v1::FrontMessage m = event(v1::EVENT_MESSAGE_CHUNK, seq, transaction, false);
  m.mutable_event()->set_chunk(std::move(bytes));
  return m;
}

std::shared_ptr<grpc::Channel> plain_channel(const std::string& target) {
  return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
}

std::shared_ptr<grpc::Channel> tls_channel(const std::string& target, const fs::path& certs) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = read_file(certs / "ca.crt");
  o.pem_cert_chain = read_file(certs / "tls.crt");
  o.pem_private_key = read_file(certs / "tls.key");
  return grpc::CreateChannel(target, grpc::SslCredentials(o));
}

// Opens a session and reads SessionOpened; false when the peer is refused.
bool opens_session(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::Policy::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  std::unique_ptr<Stream> s = stub->Session(&ctx);
  s->Write(start_message());
  v1::PolicyMessage m;
  const bool opened = s->Read(&m) && m.has_opened();
  ctx.TryCancel();
  s->Finish();
  return opened;
}

// GET /metrics of policyd's --metrics endpoint on loopback.
std::string scrape(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string text;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0 && text.size() < (1u << 20);) text.append(buf, n);
    }
  }
  close(fd);
  return text;
}

bool serving(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  return stub->Check(&ctx, req, &resp).ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

// Issue 19.1: "../escape" and an absolute path as transaction_id, a chunk
// and a reset. Before the fix policyd truncated, wrote and then deleted
// <transaction_id>.msg wherever that pointed.
TEST_F(PolicydLink, ATransactionIdFromTheWireNeverNamesAFileOutsideTheSpool) {
  const fs::path relative_victim = dir_ / "escape.msg";           // spool/../escape.msg
  const fs::path absolute_victim = dir_ / "abs" / "victim.msg";   // "/…/abs/victim" + ".msg"
  const fs::path would_be_created = dir_ / "created.msg";
  fs::create_directories(absolute_victim.parent_path());
  std::ofstream(relative_victim) << "victim one";
  std::ofstream(absolute_victim) << "victim two";
  const std::string target = "127.0.0.1:" + std::to_string(free_port());
  // hook.dot with a parameter: policyd spools the message to a temp file.
  auto& p = start(target, "function hook.dot(path) return nil end\n"
                          "function hook.noop() return '250 2.0.0 synced\\r\\n' end\n");
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto stub = v1::Policy::NewStub(plain_channel(target));
  grpc::ClientContext ctx;
  std::unique_ptr<Stream> s = stub->Session(&ctx);
  ASSERT_TRUE(s->Write(start_message()));
  v1::PolicyMessage m;
  ASSERT_TRUE(s->Read(&m));
  ASSERT_TRUE(m.opened().capabilities().wants_message());
  std::uint64_t seq = 1;
  // The worker handled everything before a NOOP's answer arrives.
  auto sync = [&](const std::string& transaction) {
    ASSERT_TRUE(s->Write(event(v1::EVENT_NOOP, seq, transaction, true)));
    ASSERT_TRUE(s->Read(&m));
    ASSERT_EQ(m.decision().seq(), seq);
    ++seq;
  };
  for (const std::string& transaction : {std::string("../escape"), (dir_ / "abs" / "victim").string(),
                                        std::string("../created")}) {
    SCOPED_TRACE(transaction);
    ASSERT_TRUE(s->Write(event(v1::EVENT_MAIL, seq++, transaction, false)));
    ASSERT_TRUE(s->Write(chunk(seq++, transaction, "Subject: evil\r\n\r\noverwritten\r\n")));
    sync(transaction);
    EXPECT_EQ(read_file(relative_victim), "victim one");
    EXPECT_EQ(read_file(absolute_victim), "victim two");
    EXPECT_FALSE(fs::exists(would_be_created));
    ASSERT_TRUE(s->Write(event(v1::EVENT_RESET, seq++, "", false)));
    sync("");
    EXPECT_TRUE(fs::exists(relative_victim));
    EXPECT_TRUE(fs::exists(absolute_victim));
  }
  // Nothing outside the spool changed, and nothing of the three is left in it.
  std::vector<fs::path> outside;
  for (const auto& e : fs::recursive_directory_iterator(dir_)) {
    const fs::path rel = fs::relative(e.path(), dir_);
    if (e.is_regular_file() && *rel.begin() != "spool" && e.path().extension() == ".msg") outside.push_back(rel);
  }
  std::sort(outside.begin(), outside.end());
  EXPECT_EQ(outside, (std::vector<fs::path>{"abs/victim.msg", "escape.msg"}));
  EXPECT_TRUE(fs::is_empty(spool_));
  s->WritesDone();
  EXPECT_TRUE(s->Finish().ok());
}

// Issue 19.1: a client that only writes. The worker is stuck in a DNS wait
// (a nameserver that never answers), so every event after MAIL queues.
// Before the fix policyd read and queued all of it (its RSS grew by the
// 256 MiB sent); now it stops reading at --max-pending-events and HTTP/2
// flow control holds the writer.
TEST_F(PolicydLink, AStreamThatOnlyWritesIsHeldAtMaxPendingEvents) {
  int silent_port = 0;
  const int silent_dns = silent_udp_socket(silent_port);  // bound, never read
  ASSERT_GE(silent_dns, 0);
  const std::string target = "127.0.0.1:" + std::to_string(free_port());
  const int metrics_port = free_port();
  auto& p = start(target,
                  "function hook.mail(s) dns.query(dns.class.IN, dns.type.A, 'never.example.test') dns.wait(true) end\n"
                  "function hook.content(c) end\n",
                  {"--dns-server", "127.0.0.1:" + std::to_string(silent_port), "--dns-timeout", "60000",
                   "--hook-timeout", "120000", "--metrics", "127.0.0.1:" + std::to_string(metrics_port)});
  // --max-pending-events: its default (64)
  ASSERT_TRUE(p.wait_listening()) << p.log();
  const long rss_before = p.rss_kib();
  auto stub = v1::Policy::NewStub(plain_channel(target));
  grpc::ClientContext ctx;
  std::unique_ptr<Stream> s = stub->Session(&ctx);
  ASSERT_TRUE(s->Write(start_message()));
  v1::PolicyMessage m;
  ASSERT_TRUE(s->Read(&m));
  ASSERT_TRUE(s->Write(event(v1::EVENT_MAIL, 1, "T1", false)));
  constexpr int kChunks = 4096;  // 64 KiB each: 256 MiB in all
  std::atomic<int> written{0};
  std::thread writer([&] {
    const std::string bytes(64 * 1024, 'x');
    for (int i = 0; i < kChunks; ++i) {
      if (!s->Write(chunk(2 + i, "T1", bytes))) return;
      written = i + 1;
    }
  });
  // Unbounded: everything goes through and RSS grows past 128 MiB. Bounded:
  // the writer stalls; give it 5 s to prove it cannot get through.
  const bool through = wait_until([&] { return written == kChunks || p.rss_kib() - rss_before > 128 * 1024; },
                                  std::chrono::seconds(5));
  const long grown = p.rss_kib() - rss_before;
  const int sent = written;
  ctx.TryCancel();  // unblocks the writer
  writer.join();
  std::printf("flood: %d of %d chunks taken, policyd RSS grew %ld KiB\n", sent, kChunks, grown);
  EXPECT_FALSE(through) << "all " << sent << " chunks were taken; RSS grew " << grown << " KiB";
  EXPECT_LT(sent, kChunks / 4);
  EXPECT_LT(grown, 64 * 1024) << "KiB";
  EXPECT_NE(p.log().find("session=L1 64 events pending (--max-pending-events); reading paused"), std::string::npos)
      << p.log();
  EXPECT_NE(scrape(metrics_port).find("\nmailhook_policyd_grpc_streams_paused_total 1\n"), std::string::npos)
      << scrape(metrics_port);
  close(silent_dns);
  // policyd is still fine for the next session.
  EXPECT_TRUE(opens_session(plain_channel(target)));
}

// The edge of --max-pending-events: a burst of exactly the limit of
// no-reply events, then one that wants a reply, is served whole.
TEST_F(PolicydLink, ABurstAtTheLimitIsServedInOrder) {
  const std::string target = "127.0.0.1:" + std::to_string(free_port());
  auto& p = start(target, "n = 0\nfunction hook.rset() n = n + 1 end\n"
                          "function hook.noop() return '250 2.0.0 rsets=' .. n .. '\\r\\n' end\n",
                  {"--max-pending-events", "1"});
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto stub = v1::Policy::NewStub(plain_channel(target));
  grpc::ClientContext ctx;
  std::unique_ptr<Stream> s = stub->Session(&ctx);
  ASSERT_TRUE(s->Write(start_message()));
  v1::PolicyMessage m;
  ASSERT_TRUE(s->Read(&m));
  for (int i = 1; i <= 50; ++i) ASSERT_TRUE(s->Write(event(v1::EVENT_RSET, i, "", false)));
  ASSERT_TRUE(s->Write(event(v1::EVENT_NOOP, 51, "", true)));
  ASSERT_TRUE(s->Read(&m));
  EXPECT_EQ(m.decision().reply().lines(0), "rsets=50");
  s->WritesDone();
  EXPECT_TRUE(s->Finish().ok());
}

// One event is at most 4 MiB: the bound of what a stream's queue holds is
// --max-pending-events x 4 MiB, not x 64 MiB as before.
TEST_F(PolicydLink, AnEventOver4MiBEndsItsStream) {
  const std::string target = "127.0.0.1:" + std::to_string(free_port());
  auto& p = start(target, "function hook.noop() return '250 2.0.0 alive\\r\\n' end\n");
  ASSERT_TRUE(p.wait_listening()) << p.log();
  auto stub = v1::Policy::NewStub(plain_channel(target));
  for (const std::size_t size : {std::size_t{4} << 20, (std::size_t{4} << 20) + 1}) {
    SCOPED_TRACE(size);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    std::unique_ptr<Stream> s = stub->Session(&ctx);
    ASSERT_TRUE(s->Write(start_message()));
    v1::PolicyMessage m;
    ASSERT_TRUE(s->Read(&m));
    // A chunk event whose serialized size is exactly `size`.
    v1::FrontMessage big = chunk(1, "T1", "");
    const std::size_t overhead = big.ByteSizeLong() + 8;  // the chunk's length prefix grows with it
    big.mutable_event()->set_chunk(std::string(size - overhead, 'x'));
    while (big.ByteSizeLong() < size) big.mutable_event()->mutable_chunk()->push_back('x');
    while (big.ByteSizeLong() > size) big.mutable_event()->mutable_chunk()->pop_back();
    ASSERT_EQ(big.ByteSizeLong(), size);
    s->Write(big);
    s->Write(event(v1::EVENT_NOOP, 2, "T1", true));
    const bool answered = s->Read(&m);
    if (size == std::size_t{4} << 20) {
      ASSERT_TRUE(answered);
      EXPECT_EQ(m.decision().reply().lines(0), "alive");
      s->WritesDone();
      EXPECT_TRUE(s->Finish().ok());
    } else {
      EXPECT_FALSE(answered);
      EXPECT_EQ(s->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    }
  }
}

// Issue 19.13: gRPC set SO_REUSEPORT, so a second policyd (other scripts)
// started on a busy port and took half the sessions.
TEST_F(PolicydLink, ASecondPolicydOnABusyPortFailsToStart) {
  const std::string target = "127.0.0.1:" + std::to_string(free_port());
  auto& first = start(target, "function hook.noop() return '250 2.0.0 first\\r\\n' end\n");
  ASSERT_TRUE(first.wait_listening()) << first.log();
  auto& second = start(target, "function hook.noop() return '250 2.0.0 second\\r\\n' end\n");
  const int status = second.wait_exit(std::chrono::seconds(20));
  EXPECT_NE(status, -1) << "the second policyd is running: " << second.log();
  EXPECT_NE(status, 0);
  EXPECT_NE(second.log().find("cannot start: cannot listen on " + target), std::string::npos) << second.log();
  EXPECT_TRUE(first.alive());
}

// A unix socket: group-only (0660), and a second policyd on the same path
// fails instead of unlinking the live socket (gRPC replaces socket files).
TEST_F(PolicydLink, AUnixSocketIsGroupOnlyAndNotTakenFromALiveDaemon) {
  const fs::path sock = dir_ / "policyd.sock";
  auto& first = start("unix:" + sock.string(), "function hook.noop() return '250 2.0.0 first\\r\\n' end\n");
  ASSERT_TRUE(first.wait_listening()) << first.log();
  struct stat st {};
  ASSERT_EQ(stat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_TRUE(opens_session(plain_channel("unix:" + sock.string())));
  auto& second = start("unix:" + sock.string(), "function hook.noop() return '250 2.0.0 second\\r\\n' end\n");
  EXPECT_EQ(second.wait_exit(std::chrono::seconds(20)), 1) << second.log();
  EXPECT_NE(second.log().find("another process accepts on " + sock.string()), std::string::npos) << second.log();
  EXPECT_TRUE(opens_session(plain_channel("unix:" + sock.string())));
  // A stale socket (its daemon gone) is replaced.
  first.stop();
  ASSERT_TRUE(fs::exists(sock));
  auto& third = start("unix:" + sock.string(), "function hook.noop() return '250 2.0.0 third\\r\\n' end\n");
  EXPECT_TRUE(third.wait_listening()) << third.log();
}

// The boundary: with --tls-cert/--tls-key/--tls-client-ca a plain client
// and a client with a certificate of another CA open nothing; the right
// client certificate opens a session, and health answers it too.
TEST_F(PolicydLink, WithMutualTlsOnlyAClientCertificateOfTheCaOpensSessions) {
  const fs::path certs = make_certs("certs");
  const fs::path other = make_certs("other");
  const std::string target = "127.0.0.1:" + std::to_string(free_port());
  auto& p = start(target, "function hook.noop() return '250 2.0.0 ok\\r\\n' end\n",
                  {"--tls-cert", (certs / "policyd" / "tls.crt").string(), "--tls-key",
                   (certs / "policyd" / "tls.key").string(), "--tls-client-ca", (certs / "ca.crt").string()});
  ASSERT_TRUE(p.wait_listening()) << p.log();
  EXPECT_NE(p.log().find("(mTLS)"), std::string::npos) << p.log();
  EXPECT_FALSE(opens_session(plain_channel(target)));
  EXPECT_FALSE(serving(plain_channel(target)));
  // Another CA's client certificate; it trusts our server, so only the
  // client side can fail.
  fs::copy_file(certs / "ca.crt", other / "front" / "ca.crt", fs::copy_options::overwrite_existing);
  EXPECT_FALSE(opens_session(tls_channel(target, other / "front")));
  // TLS without a client certificate.
  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = read_file(certs / "ca.crt");
  EXPECT_FALSE(opens_session(grpc::CreateChannel(target, grpc::SslCredentials(no_cert))));
  EXPECT_TRUE(opens_session(tls_channel(target, certs / "front")));
  EXPECT_TRUE(serving(tls_channel(target, certs / "policyd")));  // the health probe's credentials
  EXPECT_TRUE(p.alive());
}

TEST_F(PolicydLink, TlsFlagsGoTogether) {
  const fs::path certs = make_certs("certs");
  auto& p = start("127.0.0.1:" + std::to_string(free_port()), "",
                  {"--tls-cert", (certs / "policyd" / "tls.crt").string(), "--tls-key",
                   (certs / "policyd" / "tls.key").string()});
  EXPECT_EQ(p.wait_exit(std::chrono::seconds(20)), 2);
  EXPECT_NE(p.log().find("--tls-cert, --tls-key and --tls-client-ca go together"), std::string::npos) << p.log();
}

}  // namespace
