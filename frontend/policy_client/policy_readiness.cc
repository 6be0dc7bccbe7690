// policy_readiness(): the Check call on gRPC's callback API, bounded by a
// deadline shorter than the endpoint's wait, its state freed in the callback.
#include "frontend/policy_client/policy_readiness.h"

#include <chrono>

#include "grpc/health/v1/health.grpc.pb.h"

namespace mailhook::front {
namespace {

constexpr auto kCheckDeadline = std::chrono::seconds(2);  // < daemon::kReadinessTimeout

const char* state_name(grpc_connectivity_state s) {
  switch (s) {
    case GRPC_CHANNEL_IDLE: return "idle";
    case GRPC_CHANNEL_CONNECTING: return "connecting";
    case GRPC_CHANNEL_READY: return "connected";
    case GRPC_CHANNEL_TRANSIENT_FAILURE: return "unreachable";
    case GRPC_CHANNEL_SHUTDOWN: return "shut down";
  }
  return "unknown";
}

struct Check {
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
};

}  // namespace

daemon::ReadinessCheck policy_readiness(std::shared_ptr<grpc::Channel> channel, std::string target) {
  auto stub = std::shared_ptr<grpc::health::v1::Health::Stub>(grpc::health::v1::Health::NewStub(channel));
  return [channel, stub, target](std::function<void(std::string)> done) {
    auto call = std::make_shared<Check>();
    call->request.set_service("mailhook.v1.Policy");
    call->context.set_deadline(std::chrono::system_clock::now() + kCheckDeadline);
    // Fail fast (gRPC's default): waits while the channel connects, fails
    // as soon as a connection attempt failed ("unreachable: ... refused").
    stub->async()->Check(&call->context, &call->request, &call->response,
                         [call, channel, target, done = std::move(done)](grpc::Status status) {
                           if (!status.ok()) {
                             done("policy daemon " + target + " " + state_name(channel->GetState(false)) + ": " +
                                  status.error_message());
                           } else if (call->response.status() !=
                                      grpc::health::v1::HealthCheckResponse::SERVING) {
                             done("policy daemon " + target + " is not serving (health " +
                                  grpc::health::v1::HealthCheckResponse::ServingStatus_Name(call->response.status()) +
                                  ")");
                           } else {
                             done("");
                           }
                         });
  };
}

}  // namespace mailhook::front
