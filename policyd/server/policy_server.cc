// Builds the gRPC server: the Policy service, health checking, and the
// channel arguments that suit many long-lived streams on loopback.
#include "policyd/server/policy_server.h"

#include <grpcpp/health_check_service_interface.h>
#include <sys/stat.h>

#include "mailcore/telemetry/log.h"
#include "policyd/server/server_credentials.h"

namespace mailhook::policyd {

grpc::ServerBidiReactor<v1::FrontMessage, v1::PolicyMessage>* PolicyServer::Service::Session(
    grpc::CallbackServerContext* /*context*/) {
  return new SessionReactor(runtime_, counter_, max_pending_events, *paused_streams);  // deletes itself in OnDone
}

grpc::ServerBidiReactor<v1::FrontFrame, v1::PolicyFrame>* PolicyServer::Service::Sessions(
    grpc::CallbackServerContext* context) {
  // Deletes itself in OnDone.
  return new SessionsReactor(runtime_, counter_, registry, sessions_limits, *ended_sessions, context->peer());
}

PolicyServer::PolicyServer(Runtime& runtime, telemetry::Registry* registry) : service_(runtime, counter_) {
  service_.paused_streams = &(registry ? *registry : private_registry_)
                                 .counter("mailhook_policyd_grpc_streams_paused_total",
                                          "gRPC streams whose reading paused at --max-pending-events (flow control)");
  service_.ended_sessions = &(registry ? *registry : private_registry_)
                                 .counter("mailhook_policyd_grpc_sessions_ended_total",
                                          "sessions of a Sessions stream policyd gave up (over --max-pending-events "
                                          "or --max-sessions-per-stream)");
}

PolicyServer::~PolicyServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now());
}

std::string PolicyServer::start(const ServerOptions& o) {
  std::string error;
  const std::shared_ptr<grpc::ServerCredentials> credentials =
      server_credentials(o.tls_cert, o.tls_key, o.tls_client_ca, error);
  if (!credentials) return error;
  const std::string socket_path = unix_socket_path(o.listen);
  if (!socket_path.empty()) {
    if (std::string e = check_unix_socket_free(socket_path); !e.empty()) return "cannot listen on " + o.listen + ": " + e;
  }
  service_.max_pending_events = o.max_pending_events;
  service_.sessions_limits = SessionsLimits{.max_pending_events = o.max_pending_events,
                                            .max_sessions = o.max_sessions_per_stream,
                                            .max_frame_bytes = 4 << 20,
                                            .max_age = o.max_connection_age};
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(o.listen, credentials, &port);
  builder.RegisterService(&service_);
  // A busy port is a start-up error: gRPC would otherwise set SO_REUSEPORT
  // and a second daemon (other scripts) would silently share the traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Sessions are long streams with small messages: keep them cheap.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 100000);
  // One event is at most 4 MiB (gRPC's default; the front sends message
  // chunks of 64 KiB), so a stream holds at most --max-pending-events x
  // 4 MiB on its worker; a larger message ends the stream (RESOURCE_EXHAUSTED).
  builder.SetMaxReceiveMessageSize(4 << 20);
  if (o.max_connection_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, static_cast<int>(o.max_connection_age.count() * 1000));
    // Sessions in flight are never cut: a day is longer than any SMTP session.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 24 * 3600 * 1000);
  }
  // A unix socket is created 0660: the front reaches it through the group.
  // The umask is process-wide, but no session (no script I/O) runs yet.
  const mode_t old_umask = socket_path.empty() ? 0 : ::umask(0117);
  server_ = builder.BuildAndStart();
  if (!socket_path.empty()) ::umask(old_umask);
  if (!server_ || (port == 0 && socket_path.empty())) {
    server_.reset();
    return "cannot listen on " + o.listen + " (address in use or invalid)";
  }
  if (!socket_path.empty()) ::chmod(socket_path.c_str(), 0660);
  server_->GetHealthCheckService()->SetServingStatus(true);
  server_->GetHealthCheckService()->SetServingStatus("mailhook.v1.Policy", true);
  serving_ = true;
  return "";
}

void PolicyServer::drain(std::chrono::seconds grace) {
  if (!server_) return;
  serving_ = false;
  server_->GetHealthCheckService()->SetServingStatus(false);
  log::notice("draining: {} open session(s), up to {}s", counter_.open(), grace.count());
  // Shared streams learn it in-band: their fronts open new sessions on
  // another replica while these finish here.
  service_.registry.drain_all("shutting down");
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
}

}  // namespace mailhook::policyd
