// The spool writer. The envelope block is line-oriented text, then a blank
// line, then the message exactly as it will be delivered.
#include "frontend/delivery/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

namespace mailhook::front {
namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

bool write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

bool fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string Spool::prepare() const {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir_) / "quarantine", ec);
  return ec ? "cannot create spool " + dir_ + ": " + ec.message() : "";
}

std::string Spool::write(const Envelope& e, const std::string& received, const std::string& message) const {
  const std::string dir = e.quarantine.empty() ? dir_ : dir_ + "/quarantine";
  const std::string final_path = dir + "/" + e.queue_id + ".eml";
  const std::string temp_path = dir + "/.tmp-" + e.queue_id;
  std::string head = "X-Mailhook-Spool: 1\r\nX-Mailhook-Session: " + e.session_id +
                     "\r\nX-Mailhook-Queue-Id: " + e.queue_id + "\r\nX-Mailhook-Client: " + e.client_address + " " +
                     std::to_string(e.client_port) + " " + (e.client_host.empty() ? "-" : e.client_host) +
                     "\r\nX-Mailhook-Helo: " + e.helo + "\r\nX-Mailhook-Received-At: " +
                     std::to_string(std::time(nullptr)) + "\r\nX-Mailhook-From: <" + e.sender + ">" +
                     parameter_text(e.mail_parameters) + "\r\n";
  for (std::size_t i = 0; i < e.recipients.size(); ++i) {
    head += "X-Mailhook-To: <" + e.recipients[i] + ">" +
            (i < e.rcpt_parameters.size() ? parameter_text(e.rcpt_parameters[i]) : std::string()) + "\r\n";
  }
  if (!e.quarantine.empty()) head += "X-Mailhook-Quarantine: " + e.quarantine + "\r\n";
  head += "X-Mailhook-Size: " + std::to_string(received.size() + message.size()) + "\r\n\r\n";

  const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return errno_text("open " + temp_path);
  bool ok = write_all(fd, head) && write_all(fd, received) && write_all(fd, message);
  std::string error = ok ? "" : errno_text("write " + temp_path);
  if (ok && ::fsync(fd) != 0) error = errno_text("fsync " + temp_path);
  ::close(fd);
  if (error.empty() && ::rename(temp_path.c_str(), final_path.c_str()) != 0) error = errno_text("rename");
  if (error.empty() && !fsync_dir(dir)) error = errno_text("fsync " + dir);
  if (!error.empty()) ::unlink(temp_path.c_str());
  return error;
}

}  // namespace mailhook::front
