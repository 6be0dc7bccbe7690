// The checks behind --check (config_check.h). Each check mirrors what the
// daemon does with the setting at start, so "OK" here means start-up will
// not trip on it; messages name the flag, the value and the reason.
#include "daemon/config_check.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace mailhook::daemon {
namespace fs = std::filesystem;

namespace {

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data found";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

}  // namespace

void ConfigCheck::problem(const std::string& flag, const std::string& value, const std::string& what) {
  problems_.push_back(flag + (value.empty() ? "" : " " + value) + ": " + what);
}

void ConfigCheck::host_port(const std::string& flag, const std::string& value, bool any_port) {
  const std::size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == value.size()) {
    problem(flag, value, "expected HOST:PORT");
    return;
  }
  std::string host = value.substr(0, colon);
  const std::string port = value.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (*end != '\0' || p < (any_port ? 0 : 1) || p > 65535) {
    problem(flag, value, "the port must be a number from " + std::string(any_port ? "0" : "1") + " to 65535");
    return;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    problem(flag, value, "cannot resolve " + host + ": " + gai_strerror(rc));
    return;
  }
  freeaddrinfo(found);
}

void ConfigCheck::grpc_target(const std::string& flag, const std::string& value, bool listening) {
  if (value.rfind("unix:", 0) == 0) {
    std::string path = value.substr(5);
    if (path.rfind("//", 0) == 0) path = path.substr(2);  // unix:///abs/path
    if (path.empty() || path.size() >= 108) {
      problem(flag, value, "a unix socket path of 1 to 107 bytes");
      return;
    }
    const fs::path dir = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      problem(flag, value, "the socket's directory " + dir.string() + " does not exist");
    } else if (listening && access(dir.c_str(), W_OK | X_OK) != 0) {
      problem(flag, value, "cannot create the socket: " + dir.string() + " not writable");
    }
    return;
  }
  if (value.rfind("dns:", 0) == 0) {
    std::string rest = value.substr(4);
    if (rest.rfind("///", 0) == 0) rest = rest.substr(3);
    host_port(flag, rest.find(':') == std::string::npos ? rest + ":443" : rest);
    return;
  }
  if (value.rfind("ipv4:", 0) == 0 || value.rfind("ipv6:", 0) == 0) {
    std::string rest = value.substr(5);
    std::size_t start = 0;
    while (start <= rest.size()) {
      const std::size_t comma = rest.find(',', start);
      host_port(flag, rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return;
  }
  host_port(flag, value, listening);
}

void ConfigCheck::readable_file(const std::string& flag, const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    problem(flag, path, "no such file");
  } else if (fs::is_directory(st)) {
    problem(flag, path, "is a directory, not a file");
  } else if (access(path.c_str(), R_OK) != 0) {
    problem(flag, path, std::string("not readable: ") + std::strerror(errno));
  }
}

void ConfigCheck::directory(const std::string& flag, const std::string& path, bool writable, bool creatable) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    if (!creatable) {
      problem(flag, path, "no such directory");
      return;
    }
    // The nearest existing ancestor must let us create what is missing.
    fs::path p = fs::absolute(path, ec).parent_path();
    while (!p.empty() && !fs::exists(p, ec) && p != p.root_path()) p = p.parent_path();
    if (access(p.c_str(), W_OK | X_OK) != 0) {
      problem(flag, path, "cannot create it: " + p.string() + " not writable");
    }
    return;
  }
  if (!fs::is_directory(st)) {
    problem(flag, path, "not a directory");
    return;
  }
  if (access(path.c_str(), R_OK | X_OK) != 0) {
    problem(flag, path, "not readable");
  } else if (writable && access(path.c_str(), W_OK) != 0) {
    problem(flag, path, "not writable");
  }
}

void ConfigCheck::certificate(const std::string& flag, const std::string& path) {
  File f(std::fopen(path.c_str(), "r"));
  if (!f) {
    problem(flag, path, std::string("cannot read: ") + std::strerror(errno));
    return;
  }
  ERR_clear_error();
  X509* cert = PEM_read_X509(f.get(), nullptr, nullptr, nullptr);
  if (cert == nullptr) {
    problem(flag, path, "not a PEM certificate: " + openssl_error());
    return;
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) problem(flag, path, "the certificate has expired");
  X509_free(cert);
}

void ConfigCheck::private_key(const std::string& flag, const std::string& path) {
  File f(std::fopen(path.c_str(), "r"));
  if (!f) {
    problem(flag, path, std::string("cannot read: ") + std::strerror(errno));
    return;
  }
  ERR_clear_error();
  EVP_PKEY* key = PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) {
    problem(flag, path, "not a PEM private key: " + openssl_error());
    return;
  }
  EVP_PKEY_free(key);
}

void ConfigCheck::key_matches(const std::string& cert_flag, const std::string& cert, const std::string& key_flag,
                              const std::string& key) {
  File cf(std::fopen(cert.c_str(), "r"));
  File kf(std::fopen(key.c_str(), "r"));
  if (!cf || !kf) return;  // reported by certificate() / private_key()
  X509* c = PEM_read_X509(cf.get(), nullptr, nullptr, nullptr);
  EVP_PKEY* k = PEM_read_PrivateKey(kf.get(), nullptr, nullptr, nullptr);
  if (c != nullptr && k != nullptr && X509_check_private_key(c, k) != 1) {
    problem(key_flag, key, "is not the private key of " + cert_flag + " " + cert);
  }
  ERR_clear_error();
  if (c != nullptr) X509_free(c);
  if (k != nullptr) EVP_PKEY_free(k);
}

void ConfigCheck::open_files(std::uint64_t needed, const std::string& what) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_max != RLIM_INFINITY && needed > rl.rlim_max) {
    problems_.push_back(what + " may need " + std::to_string(needed) + " file descriptors, RLIMIT_NOFILE allows " +
                        std::to_string(rl.rlim_max) + " (raise LimitNOFILE= / ulimit -n, or lower the limits)");
  }
}

int ConfigCheck::report(const std::string& program, const std::string& summary) const {
  for (const std::string& p : problems_) std::fprintf(stderr, "%s: %s\n", program.c_str(), p.c_str());
  if (problems_.empty()) std::fprintf(stderr, "%s: OK (%s)\n", program.c_str(), summary.c_str());
  return problems_.empty() ? 0 : 1;
}

}  // namespace mailhook::daemon
