// Helpers of the C++ gRPC link tests: free loopback ports, file reads,
// bounded polling, and a policyd process started by posix_spawn and killed
// by PID at the latest in its destructor. No test logic lives here; never
// binds anything but loopback.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace link_support {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

inline std::string policyd_binary() {
  const char* e = std::getenv("MAILHOOK_POLICYD");
  return e && *e ? e : MAILHOOK_POLICYD;
}

inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  close(fd);
  return ntohs(a.sin_port);
}

// A UDP socket bound on loopback that nobody reads: a nameserver that
// never answers. Returns the fd (the test closes it) and sets `port`.
inline int silent_udp_socket(int& port) {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  socklen_t n = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  port = ntohs(a.sin_port);
  return fd;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Polls `done` every 10 ms until it holds or `limit` passed.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// One policyd process: stderr to a log file, killed by PID at the latest
// in the destructor.
class PolicydProcess {
 public:
  PolicydProcess(std::vector<std::string> args, const fs::path& log) : log_(log) {
    args.insert(args.begin(), policyd_binary());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 2, 1);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~PolicydProcess() { stop(); }
  // SIGKILL: no clean-up, as after a crash.
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  // A signal by PID (SIGTERM: drain).
  void signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  std::string log() const { return read_file(log_); }
  pid_t pid() const { return pid_; }
  // The exit status once it exited within `limit`, else -1 (still running).
  int wait_exit(std::chrono::milliseconds limit) {
    int result = -1;
    wait_until([&] {
      int status = 0;
      if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        result = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
      }
      return pid_ < 0;
    }, limit);
    return result;
  }
  // True once it logged that it listens; false if it exited first.
  bool wait_listening() {
    wait_until([&] { return log().find("listening on") != std::string::npos || !alive(); },
               std::chrono::seconds(20));
    return alive() && log().find("listening on") != std::string::npos;
  }
  bool alive() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
      return false;
    }
    return true;
  }
  int exit_status() const { return exit_status_; }
  // VmRSS in KiB, from /proc.
  long rss_kib() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    }
    return -1;
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
};

}  // namespace link_support
