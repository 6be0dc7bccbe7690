// mailhook-policyd --check (check.h): addresses, the milter socket,
// script files, sandbox directories, certificates, limits; then the
// scripts are loaded in a fresh state (Runtime::check) so a syntax error
// names file and line. All problems are listed, not only the first.
#include "policyd/check.h"

#include <arpa/inet.h>

#include <algorithm>

#include "daemon/config_check.h"
#include "policyd/milter/milter_adapter.h"

namespace mailhook::policyd {
namespace {

// "ip[:port],…" with "[v6]:port" for IPv6 (dns/resolver's syntax).
void dns_servers(daemon::ConfigCheck& check, const std::string& list) {
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = list.find(',', start);
    std::string s = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    std::string ip = s;
    if (!s.empty() && s.front() == '[') {
      ip = s.substr(1, s.find(']') == std::string::npos ? std::string::npos : s.find(']') - 1);
    } else if (std::count(s.begin(), s.end(), ':') == 1) {
      ip = s.substr(0, s.find(':'));
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1) {
      check.problem("--dns-server", s, "not an IP address (ip[:port], [::1]:53 for IPv6)");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

}  // namespace

int check_config(const PolicyConfig& c, const RuntimeConfig& rc) {
  daemon::ConfigCheck check;
  check.grpc_target("--listen", c.listen, true);
  if (!c.metrics.empty()) check.host_port("--metrics", c.metrics, true);
  if (!c.milter.empty()) {
    if (std::string e = milter::check_socket(c.milter); !e.empty()) check.problem("--milter", c.milter, e);
  }
  if (!c.kv.empty()) check.host_port("--kv", c.kv);
  if (!c.dns_servers.empty()) dns_servers(check, c.dns_servers);
  const std::size_t before_scripts = check.problems().size();
  for (const auto& s : c.scripts) check.readable_file("--script", s);
  for (const auto& s : c.shadow_scripts) check.readable_file("--shadow-script", s);
  for (const auto& d : c.lua_read_dirs) check.directory("--lua-read-dir", d, false, false);
  for (const auto& d : c.lua_write_dirs) check.directory("--lua-write-dir", d, true, false);
  // Loading needs the files and the grants; their problems are listed once.
  const bool loadable = check.problems().size() == before_scripts;
  for (const auto& t : c.test) check.readable_file("--test", t);
  if (!c.spool_dir.empty()) check.directory("--temp-dir", c.spool_dir, true, true);
  if (!c.tls_cert.empty()) {
    check.certificate("--tls-cert", c.tls_cert);
    check.private_key("--tls-key", c.tls_key);
    check.key_matches("--tls-cert", c.tls_cert, "--tls-key", c.tls_key);
    check.certificate("--tls-client-ca", c.tls_client_ca);
  }
  // Each MTA connection is a descriptor; each worker a few (its resolver,
  // kv connection, wake-up pipe); gRPC and the metrics port some more.
  if (!c.milter.empty()) {
    check.open_files(c.milter_max_connections + 8 * static_cast<std::uint64_t>(c.workers) + 256,
                     "--milter-max-connections " + std::to_string(c.milter_max_connections));
  }
  if (loadable) {
    if (std::string e = Runtime::check(rc); !e.empty()) check.problem("--script", "", e);
  }
  return check.report("mailhook-policyd", std::to_string(rc.scripts.size() + rc.shadow_scripts.size()) +
                                              " script(s) loaded, listen " + c.listen);
}

}  // namespace mailhook::policyd
