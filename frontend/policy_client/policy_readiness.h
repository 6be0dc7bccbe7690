// The front's /readyz: policyd reachable and serving, asked with one
// grpc.health.v1 Check (service mailhook.v1.Policy) on the policy channel.
// Opens no Policy session, so no hook runs and policyd logs nothing; a
// policy that refuses the probe's address cannot take the front out of
// its load balancer. Never blocks: the answer comes from a gRPC thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "daemon/metrics_http.h"

namespace mailhook::front {

// `target`: --policyd, for the operator's reason text.
daemon::ReadinessCheck policy_readiness(std::shared_ptr<grpc::Channel> channel, std::string target);

}  // namespace mailhook::front
