// The gRPC server of policyd: the mailhook.v1.Policy service on the
// callback API plus grpc.health.v1. It posts to the runtime and never
// blocks a gRPC thread; it accepts no SMTP clients.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "mailhook/v1/session.grpc.pb.h"
#include "policyd/lua_runtime/runtime.h"
#include "policyd/server/session_reactor.h"

namespace mailhook::policyd {

class PolicyServer {
 public:
  explicit PolicyServer(Runtime& runtime);
  ~PolicyServer();

  // Binds and starts serving; "" on success, else why not.
  // `max_connection_age`: after it, a front's connection is told to go
  // (GOAWAY) so it reconnects and re-resolves dns:/// targets (new replicas
  // get sessions); open sessions finish on the old connection. 0: never.
  std::string start(const std::string& listen, std::chrono::seconds max_connection_age);
  // SIGTERM: health goes NOT_SERVING, no new streams, open ones get until
  // `grace` to finish, then are cancelled.
  void drain(std::chrono::seconds grace);
  long open_sessions() { return counter_.open(); }

 private:
  class Service final : public v1::Policy::CallbackService {
   public:
    Service(Runtime& r, SessionCounter& c) : runtime_(r), counter_(c) {}
    grpc::ServerBidiReactor<v1::FrontMessage, v1::PolicyMessage>* Session(
        grpc::CallbackServerContext* context) override;

   private:
    Runtime& runtime_;
    SessionCounter& counter_;
  };

  SessionCounter counter_;
  Service service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace mailhook::policyd
