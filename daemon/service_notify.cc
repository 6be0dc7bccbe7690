// The sd_notify datagram (see service_notify.h): a best-effort message to
// the service manager; nothing here may stop or slow a daemon.
#include "daemon/service_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "mailcore/telemetry/log.h"

namespace mailhook::daemon {

bool notify_service_manager(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return false;
  const std::size_t len = std::strlen(path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // A path must fit sun_path with its NUL; "@name" is an abstract name
  // (Linux): a leading NUL byte instead of the '@', no terminator.
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof(addr.sun_path)) {
    log::warning("NOTIFY_SOCKET is not a socket path or @name: {}", log::escape_text(path));
    return false;
  }
  std::memcpy(addr.sun_path, path, len);
  socklen_t addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + 1);
  if (path[0] == '@') {
    addr.sun_path[0] = '\0';
    addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  }
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  // MSG_DONTWAIT: a full manager queue loses a state line, never stalls us.
  const ssize_t sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                              reinterpret_cast<const sockaddr*>(&addr), addr_len);
  const int saved = errno;
  close(fd);
  if (sent < 0) {
    log::warning("cannot tell the service manager {}: {}", log::escape_text(state), std::strerror(saved));
    return false;
  }
  return true;
}

void notify_ready(std::string_view status) {
  notify_service_manager("READY=1\nSTATUS=" + std::string(status));
}

void notify_reloading() {
  // systemd >= 253 matches a reload by CLOCK_MONOTONIC in microseconds.
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const unsigned long long usec =
      static_cast<unsigned long long>(now.tv_sec) * 1000000ULL + static_cast<unsigned long long>(now.tv_nsec) / 1000;
  notify_service_manager("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void notify_stopping() { notify_service_manager("STOPPING=1"); }

}  // namespace mailhook::daemon
