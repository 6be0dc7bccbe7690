// The spool writer and its group committer. The envelope block is
// line-oriented text, then a blank line, then the message exactly as it
// will be delivered.
#include "frontend/delivery/spool.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2 (glibc 2.28)
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

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

// The final step: the temp file takes its name, and never replaces a file
// already there (another front sharing the spool, or an id used twice):
// that file is mail already answered 250. renameat2(RENAME_NOREPLACE);
// where the filesystem lacks it, link(2), which fails on an existing name
// too, then the temp name goes.
std::string publish(const std::string& temp_path, const std::string& final_path) {
  if (::renameat2(AT_FDCWD, temp_path.c_str(), AT_FDCWD, final_path.c_str(), RENAME_NOREPLACE) == 0) return "";
  if (errno != EINVAL && errno != ENOSYS) {
    return errno == EEXIST ? "refusing to replace " + final_path + " (already in the spool)" : errno_text("rename");
  }
  if (::link(temp_path.c_str(), final_path.c_str()) != 0) {
    return errno == EEXIST ? "refusing to replace " + final_path + " (already in the spool)" : errno_text("link");
  }
  ::unlink(temp_path.c_str());
  return "";
}

std::string envelope_block(const Envelope& e, std::size_t size) {
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
  head += "X-Mailhook-Size: " + std::to_string(size) + "\r\n\r\n";
  return head;
}

}  // namespace

class SpoolCommitter {
 public:
  struct Job {
    const Envelope* envelope;
    const std::string* received;
    const std::string* message;
    std::function<void(std::string)> done;
    // Filled by the committer.
    std::string dir, temp_path, final_path, error;
    int fd = -1;
    bool created = false;  // the temp file is ours to remove
  };

  explicit SpoolCommitter(std::string dir) : dir_(std::move(dir)), thread_([this] { run(); }) {}
  ~SpoolCommitter() {
    {
      std::lock_guard l(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  void submit(Job job) {
    {
      std::lock_guard l(mu_);
      queue_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

  std::atomic<std::uint64_t> messages{0}, commits{0};

 private:
  void run() {
    for (;;) {
      std::vector<Job> batch;
      {
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, nothing left
        batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
        queue_.clear();
      }
      commit(batch);
      for (Job& j : batch) j.done(std::move(j.error));
    }
  }

  // Stage every file, one syncfs for their data, rename, sync directories.
  void commit(std::vector<Job>& batch) {
    int any_fd = -1;
    for (Job& j : batch) {
      const Envelope& e = *j.envelope;
      j.dir = e.quarantine.empty() ? dir_ : dir_ + "/quarantine";
      j.final_path = j.dir + "/" + e.queue_id + ".eml";
      j.temp_path = j.dir + "/.tmp-" + e.queue_id;
      j.fd = ::open(j.temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
      if (j.fd < 0) {
        j.error = errno_text("open " + j.temp_path);
        continue;
      }
      j.created = true;
      const std::string head = envelope_block(e, j.received->size() + j.message->size());
      if (!write_all(j.fd, head) || !write_all(j.fd, *j.received) || !write_all(j.fd, *j.message)) {
        j.error = errno_text("write " + j.temp_path);
      }
      if (j.error.empty()) any_fd = j.fd;
    }
    // One sync for the whole batch: syncfs flushes every dirty file of the
    // spool's filesystem and reports a writeback error (Linux >= 5.8); if
    // it fails, each file is fsync'd so only the bad ones fail.
    const bool synced = any_fd >= 0 && ::syncfs(any_fd) == 0;
    std::set<std::string> dirs;
    for (Job& j : batch) {
      if (j.fd >= 0) {
        if (j.error.empty() && !synced && ::fsync(j.fd) != 0) j.error = errno_text("fsync " + j.temp_path);
        ::close(j.fd);
        j.fd = -1;
      }
      if (j.error.empty()) j.error = publish(j.temp_path, j.final_path);
      if (j.error.empty()) {
        dirs.insert(j.dir);
      } else if (j.created) {
        ::unlink(j.temp_path.c_str());  // never another front's temp file of the same name
      }
    }
    for (const std::string& d : dirs) {
      if (fsync_dir(d)) continue;
      const std::string error = errno_text("fsync " + d);
      for (Job& j : batch) {
        if (j.error.empty() && j.dir == d) {
          j.error = error;  // the rename may not survive a crash: the client retries
          ::unlink(j.final_path.c_str());
        }
      }
    }
    messages.fetch_add(batch.size());
    commits.fetch_add(1);
  }

  std::string dir_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

Spool::Spool(std::string dir) : dir_(std::move(dir)), committer_(std::make_unique<SpoolCommitter>(dir_)) {}
Spool::~Spool() = default;
Spool::Spool(Spool&&) noexcept = default;

std::string Spool::prepare() const {
  std::error_code ec;
  // An existing directory is "created" whatever its mode and the first
  // message would fail later: say it now, in the administrator's words.
  if (std::filesystem::is_directory(dir_, ec) && access(dir_.c_str(), W_OK | X_OK) != 0) {
    return "cannot create spool: " + dir_ + " not writable";
  }
  std::filesystem::create_directories(std::filesystem::path(dir_) / "quarantine", ec);
  if (ec) return "cannot create spool " + dir_ + ": " + ec.message();
  return "";
}

void Spool::submit(const Envelope& e, const std::string& received, const std::string& message,
                   std::function<void(std::string)> done) {
  committer_->submit(SpoolCommitter::Job{&e, &received, &message, std::move(done)});
}

std::uint64_t Spool::messages() const { return committer_->messages.load(); }
std::uint64_t Spool::commits() const { return committer_->commits.load(); }

}  // namespace mailhook::front
