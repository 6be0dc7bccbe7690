// mailhook-probe: one health check, then exit 0 (healthy) or 1 (with one
// line on stderr saying why). For container HEALTHCHECKs and exec probes:
//   mailhook-probe grpc HOST:PORT [--timeout-ms N]  grpc.health.v1 Check, SERVING only
//   mailhook-probe smtp HOST:PORT [--timeout-ms N]  220 greeting, NOOP 250, QUIT
//   mailhook-probe http HOST:PORT/PATH [--timeout-ms N]  GET PATH on --metrics, 200 only
//     (/readyz, /healthz: no SMTP session, no policy run; the images use these)
// grpc over mutual TLS (policyd --tls-*): --tls-ca, --tls-cert, --tls-key,
// optionally --tls-name (the name policyd's certificate must carry).
// It never retries: the caller (Docker, kubelet) owns retries and intervals.
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kUsage =
    "usage: mailhook-probe grpc|smtp HOST:PORT [--timeout-ms N]\n"
    "       mailhook-probe http HOST:PORT/PATH [--timeout-ms N]\n"
    "       mailhook-probe grpc TARGET --tls-ca FILE --tls-cert FILE --tls-key FILE [--tls-name NAME]\n"
    "  grpc  grpc.health.v1.Health/Check (service \"\"); healthy only when SERVING; TARGET may be unix:PATH;\n"
    "        with --tls-*: mutual TLS (policyd --tls-cert/--tls-key/--tls-client-ca)\n"
    "  smtp  expects a 220 greeting and 250 to NOOP, then sends QUIT\n"
    "  http  HOST:PORT/PATH on a daemon's --metrics listener (/readyz, /healthz); healthy only on 200\n"
    "Exit 0 when healthy, 1 otherwise (one line on stderr), 2 on usage errors.\n";

int fail(const std::string& why) {
  std::fprintf(stderr, "mailhook-probe: %s\n", why.c_str());
  return 1;
}

// PEM files of a mutual-TLS probe; all empty: plaintext.
struct ProbeTls {
  std::string ca, cert, key, name;
};

bool read_pem(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  out = s.str();
  return static_cast<bool>(f) && !out.empty();
}

int probe_grpc(const std::string& target, const ProbeTls& tls, Clock::time_point deadline) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!tls.ca.empty()) {
    grpc::SslCredentialsOptions o;
    if (!read_pem(tls.ca, o.pem_root_certs) || !read_pem(tls.cert, o.pem_cert_chain) ||
        !read_pem(tls.key, o.pem_private_key))
      return fail("grpc " + target + ": cannot read --tls-ca/--tls-cert/--tls-key");
    credentials = grpc::SslCredentials(o);
    if (!tls.name.empty()) args.SetSslTargetNameOverride(tls.name);
  }
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateCustomChannel(target, credentials, args));
  grpc::ClientContext context;
  // gRPC takes system_clock deadlines. Fail fast (no wait_for_ready): refused is unhealthy now.
  context.set_deadline(std::chrono::system_clock::now() + (deadline - Clock::now()));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return fail("grpc " + target + ": " + status.error_message());
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING)
    return fail("grpc " + target + ": " + grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()));
  return 0;
}

// Splits "host:port" or "[v6]:port".
bool split_host_port(const std::string& address, std::string& host, std::string& port) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) return false;
  host = address.substr(0, colon);
  port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return !host.empty();
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// A socket closed on every path out of probe_smtp.
struct Socket {
  int fd = -1;
  ~Socket() { if (fd >= 0) ::close(fd); }
};

// Reads one whole SMTP reply (RFC 5321 4.2: "ddd-" lines, then "ddd ");
// returns its code, or -1 on EOF, error or deadline.
int read_reply(int fd, std::string& buffer, std::string& last_line, Clock::time_point deadline) {
  for (;;) {
    const auto eol = buffer.find("\r\n");
    if (eol != std::string::npos) {
      last_line = buffer.substr(0, eol);
      buffer.erase(0, eol + 2);
      if (last_line.size() >= 4 && last_line[3] == '-') continue;
      return last_line.size() >= 3 ? std::atoi(last_line.substr(0, 3).c_str()) : -1;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return -1;
    char chunk[1024];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return -1;
    buffer.append(chunk, static_cast<std::size_t>(n));
    if (buffer.size() > 65536) return -1;  // not an SMTP server
  }
}

// Connects `sock` to HOST:PORT within the deadline; "" or why not.
std::string connect_to(const std::string& address, Socket& sock, Clock::time_point deadline) {
  std::string host, port;
  if (!split_host_port(address, host, port)) return "not HOST:PORT: " + address;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return address + ": " + ::gai_strerror(rc);
  sock.fd = ::socket(found->ai_family, found->ai_socktype | SOCK_NONBLOCK, found->ai_protocol);
  int rc = sock.fd < 0 ? -1 : ::connect(sock.fd, found->ai_addr, found->ai_addrlen);
  ::freeaddrinfo(found);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{sock.fd, POLLOUT, 0};
    int err = ETIMEDOUT;
    socklen_t len = sizeof err;
    if (::poll(&p, 1, remaining_ms(deadline)) == 1) ::getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    rc = err == 0 ? 0 : (errno = err, -1);
  }
  if (rc != 0) return address + ": connect: " + std::strerror(errno);
  return "";
}

// GET PATH over HTTP/1.0 (what the --metrics listener speaks); healthy on
// 200. The body's first line (the daemon's reason) goes into the failure.
int probe_http(const std::string& url, Clock::time_point deadline) {
  const auto slash = url.find('/');
  if (slash == std::string::npos) return fail("http: expected HOST:PORT/PATH, got " + url);
  const std::string address = url.substr(0, slash), path = url.substr(slash);
  Socket sock;
  if (std::string e = connect_to(address, sock, deadline); !e.empty()) return fail("http " + e);
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: " + address + "\r\n\r\n";
  if (::send(sock.fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return fail("http " + url + ": send failed");
  std::string response;
  for (;;) {
    pollfd p{sock.fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return fail("http " + url + ": no answer in time");
    char chunk[1024];
    const ssize_t n = ::recv(sock.fd, chunk, sizeof chunk, 0);
    if (n < 0) return fail("http " + url + ": " + std::strerror(errno));
    if (n == 0) break;
    response.append(chunk, static_cast<std::size_t>(n));
    if (response.size() > 65536) break;  // a health answer is a line
  }
  // RFC 9112 4: status-line = HTTP-version SP status-code SP [reason-phrase]
  const std::string status = response.size() >= 12 ? response.substr(9, 3) : "";
  if (status == "200") return 0;
  const auto body = response.find("\r\n\r\n");
  std::string why = body == std::string::npos ? "" : response.substr(body + 4);
  why = why.substr(0, why.find('\n'));
  return fail("http " + url + ": " + (status.empty() ? "not an HTTP answer" : status) + (why.empty() ? "" : " " + why));
}

int probe_smtp(const std::string& address, Clock::time_point deadline) {
  Socket sock;
  if (std::string e = connect_to(address, sock, deadline); !e.empty()) return fail("smtp " + e);
  std::string buffer, line;
  if (const int code = read_reply(sock.fd, buffer, line, deadline); code != 220)
    return fail("smtp " + address + ": greeting: " + (code < 0 ? "no reply" : line));
  if (::send(sock.fd, "NOOP\r\n", 6, MSG_NOSIGNAL) != 6) return fail("smtp " + address + ": send failed");
  if (const int code = read_reply(sock.fd, buffer, line, deadline); code != 250)
    return fail("smtp " + address + ": NOOP: " + (code < 0 ? "no reply" : line));
  ::send(sock.fd, "QUIT\r\n", 6, MSG_NOSIGNAL);
  read_reply(sock.fd, buffer, line, deadline);  // 221 is polite, not required
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  if (argc < 3) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  long timeout_ms = 3000;
  ProbeTls tls;
  for (int i = 3; i < argc; i += 2) {
    const std::string option = argv[i];
    if (i + 1 >= argc) {
      std::fputs(kUsage, stderr);
      return 2;
    }
    const char* value = argv[i + 1];
    if (option == "--timeout-ms") {
      char* end = nullptr;
      timeout_ms = std::strtol(value, &end, 10);
      if (*end != '\0' || timeout_ms < 1 || timeout_ms > 600000) {
        std::fputs("mailhook-probe: --timeout-ms takes 1..600000\n", stderr);
        return 2;
      }
    } else if (option == "--tls-ca") {
      tls.ca = value;
    } else if (option == "--tls-cert") {
      tls.cert = value;
    } else if (option == "--tls-key") {
      tls.key = value;
    } else if (option == "--tls-name") {
      tls.name = value;
    } else {
      std::fputs(kUsage, stderr);
      return 2;
    }
  }
  if ((tls.ca.empty() || tls.cert.empty() || tls.key.empty()) &&
      !(tls.ca.empty() && tls.cert.empty() && tls.key.empty() && tls.name.empty())) {
    std::fputs("mailhook-probe: --tls-ca, --tls-cert and --tls-key go together\n", stderr);
    return 2;
  }
  const std::string mode = argv[1], target = argv[2];
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  if (mode == "grpc") return probe_grpc(target, tls, deadline);
  if (mode == "smtp" && tls.ca.empty()) return probe_smtp(target, deadline);
  if (mode == "http" && tls.ca.empty()) return probe_http(target, deadline);
  std::fputs(kUsage, stderr);
  return 2;
}
