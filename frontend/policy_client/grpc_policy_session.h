// The first PolicySession: one gRPC bidi stream (PolicyStream) per SMTP
// session, opened with SessionStart and tried again on the next replica
// when it breaks before policyd answered. The only front code besides
// PolicyStream that sees mailhook.v1 types; converts with mailcore/wire.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "frontend/policy_client/policy_session.h"
#include "mailhook/v1/session.grpc.pb.h"

namespace mailhook::front {

class GrpcPolicyLink final : public PolicyLink {
 public:
  // `target` (--policyd) and `timeout` (--policy-timeout) only name the
  // failure in log lines.
  GrpcPolicyLink(v1::Policy::Stub& stub, std::string target, std::chrono::milliseconds timeout)
      : stub_(stub), target_(std::move(target)), timeout_(timeout) {}

  std::unique_ptr<PolicySession> session(asio::any_io_executor executor) override;

 private:
  v1::Policy::Stub& stub_;
  std::string target_;
  std::chrono::milliseconds timeout_;
};

}  // namespace mailhook::front
