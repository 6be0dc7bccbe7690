// policy_readiness(): the Check call on gRPC's callback API, bounded by a
// deadline shorter than the endpoint's wait, its state freed in the callback.
// Probes that come while a Check is in flight wait for its answer: a flood
// of /readyz requests makes one call to policyd at a time, not one each.
#include "frontend/policy_client/policy_readiness.h"

#include <chrono>
#include <functional>
#include <mutex>
#include <vector>

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

// The probes waiting for the Check in flight (none in flight: empty).
struct Waiters {
  std::mutex mu;
  std::vector<std::function<void(std::string)>> done;
};

}  // namespace

daemon::ReadinessCheck policy_readiness(std::shared_ptr<grpc::Channel> channel, std::string target) {
  auto stub = std::shared_ptr<grpc::health::v1::Health::Stub>(grpc::health::v1::Health::NewStub(channel));
  auto waiters = std::make_shared<Waiters>();
  return [channel, stub, target, waiters](std::function<void(std::string)> done) {
    {
      std::lock_guard l(waiters->mu);
      waiters->done.push_back(std::move(done));
      if (waiters->done.size() > 1) return;  // a Check is in flight: its answer is ours too
    }
    auto call = std::make_shared<Check>();
    call->request.set_service("mailhook.v1.Policy");
    call->context.set_deadline(std::chrono::system_clock::now() + kCheckDeadline);
    // Fail fast (gRPC's default): waits while the channel connects, fails
    // as soon as a connection attempt failed ("unreachable: ... refused").
    stub->async()->Check(&call->context, &call->request, &call->response,
                         [call, channel, target, waiters](grpc::Status status) {
                           std::string why;
                           if (!status.ok()) {
                             why = "policy daemon " + target + " " + state_name(channel->GetState(false)) + ": " +
                                   status.error_message();
                           } else if (call->response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
                             why = "policy daemon " + target + " is not serving (health " +
                                   grpc::health::v1::HealthCheckResponse::ServingStatus_Name(call->response.status()) +
                                   ")";
                           }
                           std::vector<std::function<void(std::string)>> answered;
                           {
                             std::lock_guard l(waiters->mu);
                             answered.swap(waiters->done);
                           }
                           for (auto& d : answered) d(why);
                         });
  };
}

}  // namespace mailhook::front
