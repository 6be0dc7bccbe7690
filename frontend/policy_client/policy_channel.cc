// policy_channel(): channel arguments and credentials of the front's link
// to policyd. With TLS, policyd's certificate must name the target's host
// and chain to --policyd-tls-ca; the front shows its client certificate.
#include "frontend/policy_client/policy_channel.h"

#include <fstream>
#include <sstream>

namespace mailhook::front {
namespace {

bool read_pem(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream s;
  s << f.rdbuf();
  out = s.str();
  return !out.empty();
}

}  // namespace

std::shared_ptr<grpc::Channel> policy_channel(const std::string& target, const PolicyLinkTls& tls,
                                              std::string& error) {
  grpc::ChannelArguments args;
  // dns:/// and ipv4:a,b targets spread sessions over every policyd.
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // dns:/// targets are resolved again when a connection ends (policyd's
  // --max-connection-age sends GOAWAY); at most this often, so replicas an
  // autoscaler adds get sessions within seconds.
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 2000);
  args.SetMaxReceiveMessageSize(64 << 20);
  // No transparent retries: open_policy retries a stream that breaks
  // before policyd answers, and gRPC's retry filter costs every open
  // session about 5.5 KiB (heaptrack, bench/scale.py idle).
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  if (tls.ca.empty()) return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  grpc::SslCredentialsOptions options;
  if (!read_pem(tls.ca, options.pem_root_certs) || !read_pem(tls.cert, options.pem_cert_chain) ||
      !read_pem(tls.key, options.pem_private_key)) {
    error = "cannot read --policyd-tls-ca/--policyd-tls-cert/--policyd-tls-key";
    return nullptr;
  }
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), args);
}

}  // namespace mailhook::front
