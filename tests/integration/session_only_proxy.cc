// A policyd as fronts met it before shared streams, for the front's
// fallback test (test_policy_mux): it serves only Policy.Session, passing
// each call through to a real policyd, and leaves Policy.Sessions to the
// generated base, which answers UNIMPLEMENTED like an older policyd.
// Test tool: loopback only, and it stops by itself after --lifetime.
//
//   session_only_proxy LISTEN UPSTREAM [LIFETIME_SECONDS]
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "mailhook/v1/session.grpc.pb.h"

namespace {

namespace v1 = mailhook::v1;

class SessionOnly final : public v1::Policy::Service {
 public:
  explicit SessionOnly(const std::string& upstream)
      : stub_(v1::Policy::NewStub(grpc::CreateChannel(upstream, grpc::InsecureChannelCredentials()))) {}

  grpc::Status Session(grpc::ServerContext* server,
                       grpc::ServerReaderWriter<v1::PolicyMessage, v1::FrontMessage>* front) override {
    grpc::ClientContext client;
    client.set_wait_for_ready(false);
    auto up = stub_->Session(&client);
    // Answers flow back on their own thread; the front's messages on this one.
    std::thread answers([&] {
      v1::PolicyMessage m;
      while (up->Read(&m)) {
        if (!front->Write(m)) break;
      }
    });
    v1::FrontMessage m;
    while (front->Read(&m)) {
      if (!up->Write(m)) break;
    }
    up->WritesDone();
    if (server->IsCancelled()) client.TryCancel();
    answers.join();
    return up->Finish();
  }

 private:
  std::unique_ptr<v1::Policy::Stub> stub_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s LISTEN UPSTREAM [LIFETIME_SECONDS]\n", argv[0]);
    return 2;
  }
  const int lifetime = argc > 3 ? std::atoi(argv[3]) : 120;
  SessionOnly service(argv[2]);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(argv[1], grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "cannot listen on %s\n", argv[1]);
    return 1;
  }
  std::fprintf(stderr, "listening on %s, passing Session to %s\n", argv[1], argv[2]);
  std::this_thread::sleep_for(std::chrono::seconds(lifetime));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}
