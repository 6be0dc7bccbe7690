// --check's building blocks, shared by both daemons: each looks at one
// setting (an address, a path, a certificate, a limit) the way the daemon
// will use it and adds one line per problem, naming the flag and saying
// what is wrong in an administrator's words. Reads files and resolves
// names; never binds, listens or writes (a check must not change what it
// checks).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mailhook::daemon {

class ConfigCheck {
 public:
  // One problem: "--flag VALUE: what is wrong".
  void problem(const std::string& flag, const std::string& value, const std::string& what);

  // HOST:PORT (a name is looked up, "[v6]:port" too); port 1..65535 (0
  // allowed when `any_port`).
  void host_port(const std::string& flag, const std::string& value, bool any_port = false);
  // A gRPC target or listen address: host:port, unix:PATH (its directory
  // must exist), ipv4:a:p,b:p, ipv6:..., dns:///name:port.
  void grpc_target(const std::string& flag, const std::string& value, bool listening);
  // A file the daemon reads (scripts, certificates, test files).
  void readable_file(const std::string& flag, const std::string& path);
  // A directory the daemon reads (and writes with `writable`); with
  // `creatable`, a missing one is fine when its parent lets us create it.
  void directory(const std::string& flag, const std::string& path, bool writable, bool creatable);
  // A PEM certificate chain that OpenSSL parses; a PEM private key; and
  // that the key belongs to the certificate.
  void certificate(const std::string& flag, const std::string& path);
  void private_key(const std::string& flag, const std::string& path);
  void key_matches(const std::string& cert_flag, const std::string& cert, const std::string& key_flag,
                   const std::string& key);
  // Descriptors the settings may use, against RLIMIT_NOFILE's hard limit
  // (the soft one is raised to it at start): `what` names the flags.
  void open_files(std::uint64_t needed, const std::string& what);

  const std::vector<std::string>& problems() const { return problems_; }

  // Prints each problem as "PROGRAM: LINE" on stderr, or "PROGRAM: OK
  // (SUMMARY)"; returns the exit code (0 or 1).
  int report(const std::string& program, const std::string& summary) const;

 private:
  std::vector<std::string> problems_;
};

}  // namespace mailhook::daemon
