// process_* from getrusage, getrlimit and /proc (proc(5): stat, statm,
// fd/), in the names and units of the Prometheus client libraries, so the
// usual dashboards and alerts (fds near the limit) work unchanged.
#include "daemon/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "build_commit.h"

namespace mailhook::daemon {
namespace {

std::string family(const char* name, const char* type, const char* help, const std::string& value) {
  return fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
}

double cpu_seconds() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// proc(5) /proc/self/statm: size resident shared... in pages.
bool memory(double& virtual_bytes, double& resident_bytes) {
  std::ifstream f("/proc/self/statm");
  unsigned long long size = 0, resident = 0;
  if (!(f >> size >> resident)) return false;
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  virtual_bytes = static_cast<double>(size) * page;
  resident_bytes = static_cast<double>(resident) * page;
  return true;
}

long open_fds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  long n = 0;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the descriptor opendir itself holds
}

// proc(5): field 22 of /proc/self/stat is the start time in clock ticks
// after boot; /proc/stat's btime is the boot time in seconds since the
// epoch. The command name (field 2) may hold spaces: fields count from
// the last ')'.
bool start_time(double& seconds) {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const std::size_t close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 2));  // from field 3
  std::string field;
  unsigned long long ticks = 0;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 22) ticks = std::strtoull(field.c_str(), nullptr, 10);
  }
  std::ifstream proc_stat("/proc/stat");
  unsigned long long btime = 0;
  while (std::getline(proc_stat, line)) {
    if (line.rfind("btime ", 0) == 0) btime = std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  if (btime == 0 || ticks == 0) return false;
  seconds = static_cast<double>(btime) + static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return true;
}

}  // namespace

std::string render_process_metrics(const std::string& daemon) {
  std::string out;
  out += family("process_cpu_seconds_total", "counter", "user and system CPU time spent, in seconds",
                fmt::format("{:.3f}", cpu_seconds()));
  double virtual_bytes = 0, resident_bytes = 0;
  if (memory(virtual_bytes, resident_bytes)) {
    out += family("process_resident_memory_bytes", "gauge", "resident memory size in bytes",
                  fmt::format("{:.0f}", resident_bytes));
    out += family("process_virtual_memory_bytes", "gauge", "virtual memory size in bytes",
                  fmt::format("{:.0f}", virtual_bytes));
  }
  if (const long fds = open_fds(); fds >= 0) {
    out += family("process_open_fds", "gauge", "open file descriptors", std::to_string(fds));
  }
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    out += family("process_max_fds", "gauge", "the limit of open file descriptors (RLIMIT_NOFILE, soft)",
                  nofile.rlim_cur == RLIM_INFINITY ? std::string("+Inf") : std::to_string(nofile.rlim_cur));
  }
  if (double started = 0; start_time(started)) {
    out += family("process_start_time_seconds", "gauge", "start time of the process since the epoch, in seconds",
                  fmt::format("{:.2f}", started));
  }
  out += fmt::format(
      "# HELP mailhook_build_info the version and commit this daemon was built from (value 1)\n"
      "# TYPE mailhook_build_info gauge\nmailhook_build_info{{daemon=\"{}\",version=\"{}\",commit=\"{}\"}} 1\n",
      daemon, MAILHOOK_VERSION, MAILHOOK_COMMIT);
  return out;
}

}  // namespace mailhook::daemon
