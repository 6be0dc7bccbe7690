// mailhook-front --check (check.h): addresses resolve, directories are
// usable, certificates parse and match their keys, limits fit
// RLIMIT_NOFILE. Mirrors main()'s start-up order; never binds or writes.
#include "frontend/check.h"

#include "daemon/config_check.h"
#include "frontend/server/xclient.h"

namespace mailhook::front {

int check_config(const FrontConfig& c) {
  daemon::ConfigCheck check;
  check.host_port("--listen", c.listen);
  check.grpc_target("--policyd", c.policyd, false);
  if (!c.smart_host.empty()) {
    check.host_port("--smart-host", c.smart_host);
  } else {
    check.directory("--queue-dir", c.spool, true, true);
  }
  if (!c.metrics.empty()) check.host_port("--metrics", c.metrics, true);
  if (!c.tls_cert.empty()) {
    check.certificate("--tls-cert", c.tls_cert);
    check.private_key("--tls-key", c.tls_key);
    check.key_matches("--tls-cert", c.tls_cert, "--tls-key", c.tls_key);
  }
  if (!c.policyd_tls_ca.empty()) {
    check.certificate("--policyd-tls-ca", c.policyd_tls_ca);
    check.certificate("--policyd-tls-cert", c.policyd_tls_cert);
    check.private_key("--policyd-tls-key", c.policyd_tls_key);
    check.key_matches("--policyd-tls-cert", c.policyd_tls_cert, "--policyd-tls-key", c.policyd_tls_key);
  }
  std::string cidr_error;
  if (!CidrList::parse(c.xclient_hosts, cidr_error)) check.problem("--xclient-hosts", c.xclient_hosts, cidr_error);
  // Each session holds its client socket and, while relaying, one to the
  // smart host (as main() raises the limit).
  check.open_files(2 * static_cast<std::uint64_t>(c.max_connections) + 64, "--max-connections " +
                                                                              std::to_string(c.max_connections));
  return check.report("mailhook-front", "listen " + c.listen + ", policyd " + c.policyd);
}

}  // namespace mailhook::front
