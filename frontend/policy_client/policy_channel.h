// The gRPC channel to policyd: round-robin over every address of the
// target, reconnect pacing, and the link's credentials (plaintext, or
// mutual TLS from --policyd-tls-ca/-cert/-key). Built once at start-up.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace mailhook::front {

struct PolicyLinkTls {
  std::string ca, cert, key;  // PEM file paths; all empty: plaintext
};

// nullptr and `error` set when a TLS file cannot be read.
std::shared_ptr<grpc::Channel> policy_channel(const std::string& target, const PolicyLinkTls& tls,
                                              std::string& error);

}  // namespace mailhook::front
