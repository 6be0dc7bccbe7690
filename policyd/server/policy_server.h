// The gRPC server of policyd: the mailhook.v1.Policy service on the
// callback API plus grpc.health.v1. It posts to the runtime and never
// blocks a gRPC thread; it accepts no SMTP clients.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "mailcore/telemetry/metrics.h"
#include "mailhook/v1/session.grpc.pb.h"
#include "policyd/lua_runtime/runtime.h"
#include "policyd/server/session_reactor.h"
#include "policyd/server/sessions_reactor.h"

namespace mailhook::policyd {

// How the gRPC port is served (PolicyConfig's part of it). No defaults
// here: the flags' (policyd/config.h) are the only ones; main() fills
// every field.
struct ServerOptions {
  std::string listen;  // host:port or unix:PATH
  // After it, a front's connection is told to go (GOAWAY) so it reconnects
  // and re-resolves dns:/// targets (new replicas get sessions); open
  // sessions finish on the old connection. 0: never.
  std::chrono::seconds max_connection_age{};
  // Events of one stream queued on its worker before the stream is no
  // longer read (flow control).
  std::size_t max_pending_events{};
  // Sessions open at once on one Sessions stream (many sessions per call).
  std::size_t max_sessions_per_stream{};
  // Mutual TLS: all three PEM files or none (server_credentials.h).
  std::string tls_cert, tls_key, tls_client_ca;
};

class PolicyServer {
 public:
  // `registry`: where its counters go (--metrics); kept private if nullptr.
  PolicyServer(Runtime& runtime, telemetry::Registry* registry);
  ~PolicyServer();

  // Binds and starts serving; "" on success, else why not (a busy port is
  // an error: no SO_REUSEPORT sharing with another daemon).
  std::string start(const ServerOptions& options);
  // SIGTERM: health goes NOT_SERVING, no new streams, open ones get until
  // `grace` to finish, then are cancelled.
  void drain(std::chrono::seconds grace);
  long open_sessions() { return counter_.open(); }
  // Started and not draining (/readyz); any thread.
  bool serving() const { return serving_.load(); }

 private:
  class Service final : public v1::Policy::CallbackService {
   public:
    Service(Runtime& r, SessionCounter& c) : runtime_(r), counter_(c) {}
    grpc::ServerBidiReactor<v1::FrontMessage, v1::PolicyMessage>* Session(
        grpc::CallbackServerContext* context) override;
    grpc::ServerBidiReactor<v1::FrontFrame, v1::PolicyFrame>* Sessions(
        grpc::CallbackServerContext* context) override;
    std::size_t max_pending_events{};  // ServerOptions'
    SessionsLimits sessions_limits;
    telemetry::Counter* paused_streams = nullptr;
    telemetry::Counter* ended_sessions = nullptr;
    SessionsRegistry registry;

   private:
    Runtime& runtime_;
    SessionCounter& counter_;
  };

  telemetry::Registry private_registry_;
  SessionCounter counter_;
  Service service_;
  std::unique_ptr<grpc::Server> server_;
  std::atomic<bool> serving_{false};
};

}  // namespace mailhook::policyd
