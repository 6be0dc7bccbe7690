// Builds the gRPC server: the Policy service, health checking, and the
// channel arguments that suit many long-lived streams on loopback.
#include "policyd/server/policy_server.h"

#include <grpcpp/health_check_service_interface.h>

#include "mailcore/telemetry/log.h"

namespace mailhook::policyd {

grpc::ServerBidiReactor<v1::FrontMessage, v1::PolicyMessage>* PolicyServer::Service::Session(
    grpc::CallbackServerContext* /*context*/) {
  return new SessionReactor(runtime_, counter_);  // deletes itself in OnDone
}

PolicyServer::PolicyServer(Runtime& runtime) : service_(runtime, counter_) {}

PolicyServer::~PolicyServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now());
}

std::string PolicyServer::start(const std::string& listen, std::chrono::seconds max_connection_age) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service_);
  // Sessions are long streams with small messages: keep them cheap.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 100000);
  builder.SetMaxReceiveMessageSize(64 << 20);
  if (max_connection_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, static_cast<int>(max_connection_age.count() * 1000));
    // Sessions in flight are never cut: a day is longer than any SMTP session.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 24 * 3600 * 1000);
  }
  server_ = builder.BuildAndStart();
  if (!server_ || (port == 0 && listen.rfind("unix:", 0) != 0)) {
    return "cannot listen on " + listen + " (address in use or invalid)";
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  server_->GetHealthCheckService()->SetServingStatus("mailhook.v1.Policy", true);
  return "";
}

void PolicyServer::drain(std::chrono::seconds grace) {
  if (!server_) return;
  server_->GetHealthCheckService()->SetServingStatus(false);
  log::notice("draining: {} open session(s), up to {}s", counter_.open(), grace.count());
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
}

}  // namespace mailhook::policyd
