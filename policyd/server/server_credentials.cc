// mTLS credentials and unix-socket checks for policyd's gRPC listener.
// An unauthenticated port lets anyone who reaches it run sessions with
// client facts of their choosing (README, "The gRPC port").
#include "policyd/server/server_credentials.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace mailhook::policyd {
namespace {

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream s;
  s << f.rdbuf();
  out = s.str();
  return true;
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> server_credentials(const std::string& cert, const std::string& key,
                                                            const std::string& client_ca, std::string& error) {
  if (cert.empty() && key.empty() && client_ca.empty()) return grpc::InsecureServerCredentials();
  if (cert.empty() || key.empty() || client_ca.empty()) {
    // TLS without client certificates would encrypt but still let anyone in.
    error = "--tls-cert, --tls-key and --tls-client-ca go together";
    return nullptr;
  }
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  grpc::SslServerCredentialsOptions options(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  for (const auto& [flag, path, out] : {std::tuple{"--tls-cert", &cert, &pair.cert_chain},
                                        std::tuple{"--tls-key", &key, &pair.private_key},
                                        std::tuple{"--tls-client-ca", &client_ca, &options.pem_root_certs}}) {
    if (!read_file(*path, *out) || out->empty()) {
      error = std::string("cannot read ") + flag + " " + *path + " (missing, unreadable or empty)";
      return nullptr;
    }
  }
  options.pem_key_cert_pairs.push_back(std::move(pair));
  return grpc::SslServerCredentials(options);
}

std::string unix_socket_path(const std::string& listen) {
  if (listen.rfind("unix:", 0) != 0) return "";
  std::string path = listen.substr(5);
  if (path.rfind("//", 0) == 0) path = path.substr(2);  // unix:///abs/path
  return path;
}

std::string check_unix_socket_free(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return "";  // nothing there
  if (!S_ISSOCK(st.st_mode)) return path + " exists and is not a socket";
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return "socket path too long: " + path;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket: ") + std::strerror(errno);
  const bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  // gRPC unlinks a socket file before binding: a live one would be stolen.
  if (live) return "another process accepts on " + path;
  return "";
}

}  // namespace mailhook::policyd
