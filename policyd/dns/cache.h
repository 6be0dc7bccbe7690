// AnswerCache: a worker's DNS answers by (name, class, type), kept for
// their TTL (positive: the smallest TTL of the answer records; negative:
// the SOA's, RFC 2308 5), at most an hour, least recently used first out
// when --dns-cache-entries is reached. SERVFAIL, REFUSED, timeouts and
// errors are never kept. Pure: the caller passes the time. One thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "policyd/dns/resolver.h"

namespace mailhook::policyd::dns {

class AnswerCache {
 public:
  using Clock = std::chrono::steady_clock;

  explicit AnswerCache(std::size_t max_entries) : max_(max_entries) {}

  // The answer with its TTLs lowered by its age, or nullopt.
  std::optional<Answer> get(std::string_view name, int rclass, int type, Clock::time_point now);
  void put(std::string_view name, int rclass, int type, const Answer& answer, Clock::time_point now);
  std::size_t size() const { return entries_.size(); }

  // How long `answer` may be kept (0: not at all).
  static std::chrono::seconds ttl_of(const Answer& answer);

 private:
  struct Entry {
    std::string key;
    Answer answer;
    Clock::time_point stored, expires;
  };
  static std::string key_of(std::string_view name, int rclass, int type);

  std::size_t max_;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> entries_;
};

}  // namespace mailhook::policyd::dns
