// The DNS answer cache.
#include "policyd/dns/cache.h"

#include <algorithm>

namespace mailhook::policyd::dns {
namespace {

constexpr std::uint32_t kMaxTtl = 3600;

void age(std::vector<Record>& rrs, std::uint32_t seconds) {
  for (auto& rr : rrs) rr.ttl = rr.ttl > seconds ? rr.ttl - seconds : 0;
}

}  // namespace

std::string AnswerCache::key_of(std::string_view name, int rclass, int type) {
  std::string key;
  key.reserve(name.size() + 12);
  for (char c : name) key += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;  // RFC 4343
  if (!key.empty() && key.back() == '.') key.pop_back();
  key += '/' + std::to_string(rclass) + '/' + std::to_string(type);
  return key;
}

std::chrono::seconds AnswerCache::ttl_of(const Answer& a) {
  if (a.rcode == kNoError && !a.message.answer.empty()) {
    std::uint32_t ttl = kMaxTtl;
    for (const auto& rr : a.message.answer) ttl = std::min(ttl, rr.ttl);
    return std::chrono::seconds(ttl);
  }
  if (a.rcode == kNxDomain || a.rcode == kNoError) {  // NXDOMAIN or NODATA: RFC 2308 5
    for (const auto& rr : a.message.authority) {
      if (rr.type == kSOA) return std::chrono::seconds(std::min({rr.ttl, rr.minimum, kMaxTtl}));
    }
  }
  return std::chrono::seconds(0);
}

std::optional<Answer> AnswerCache::get(std::string_view name, int rclass, int type, Clock::time_point now) {
  if (max_ == 0) return std::nullopt;
  auto it = entries_.find(key_of(name, rclass, type));
  if (it == entries_.end()) return std::nullopt;
  if (now >= it->second->expires) {
    lru_.erase(it->second);
    entries_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  Answer a = it->second->answer;
  const auto seconds = static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(now - it->second->stored).count());
  age(a.message.answer, seconds);
  age(a.message.authority, seconds);
  age(a.message.additional, seconds);
  return a;
}

void AnswerCache::put(std::string_view name, int rclass, int type, const Answer& answer, Clock::time_point now) {
  if (max_ == 0) return;
  const std::chrono::seconds ttl = ttl_of(answer);
  if (ttl.count() <= 0) return;
  std::string key = key_of(name, rclass, type);
  if (auto it = entries_.find(key); it != entries_.end()) {
    lru_.erase(it->second);
    entries_.erase(it);
  }
  while (entries_.size() >= max_) {
    entries_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{key, answer, now, now + ttl});
  entries_.emplace(std::move(key), lru_.begin());
}

}  // namespace mailhook::policyd::dns
