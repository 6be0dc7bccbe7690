// Admission of connections: the per-IP and total connection limits, and
// the drain registry SIGTERM uses. Shared by all I/O threads behind one
// mutex each; never blocks beyond it, never touches a socket.
#include <mutex>

#include "frontend/server/client_address.h"
#include "frontend/server/connection.h"

namespace mailhook::front {

ConnectionLimiter::Admission ConnectionLimiter::admit(const std::string& ip) {
  const std::string key = connection_limit_key(ip, ipv6_prefix_);
  std::lock_guard l(mu_);
  int& n = per_ip_[key];
  if (total_ >= total_limit_ || n >= per_ip_limit_) {
    const Admission full = total_ >= total_limit_ ? Admission::TotalFull : Admission::PerIpFull;
    if (n == 0) per_ip_.erase(key);
    return full;
  }
  ++n;
  ++total_;
  return Admission::Admitted;
}

void ConnectionLimiter::release(const std::string& ip) {
  const std::string key = connection_limit_key(ip, ipv6_prefix_);
  std::lock_guard l(mu_);
  --total_;
  if (--per_ip_[key] <= 0) per_ip_.erase(key);
}

std::uint64_t DrainRegistry::add(asio::any_io_executor executor, std::function<void()> on_drain) {
  std::lock_guard l(mu_);
  const std::uint64_t id = ++next_;
  entries_.emplace(id, Entry{executor, std::move(on_drain)});
  if (draining_) post_drain(id, executor);
  return id;
}

void DrainRegistry::remove(std::uint64_t id) {
  std::lock_guard l(mu_);
  entries_.erase(id);
}

void DrainRegistry::start() {
  std::lock_guard l(mu_);
  draining_ = true;
  for (const auto& [id, e] : entries_) post_drain(id, e.executor);
}

std::size_t DrainRegistry::open() {
  std::lock_guard l(mu_);
  return entries_.size();
}

// Runs on the connection's own executor, where it is also destroyed, so a
// connection still registered there is alive for the whole call.
void DrainRegistry::post_drain(std::uint64_t id, const asio::any_io_executor& executor) {
  asio::post(executor, [this, id] {
    std::function<void()> fn;
    {
      std::lock_guard l(mu_);
      auto it = entries_.find(id);
      if (it == entries_.end()) return;
      fn = it->second.on_drain;
    }
    fn();
  });
}

}  // namespace mailhook::front
