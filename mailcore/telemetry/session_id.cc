// Session id generation: time, random node, counter, in Crockford base32.
#include "mailcore/telemetry/session_id.h"

#include <sys/random.h>

#include <chrono>
#include <random>

namespace mailhook::telemetry {
namespace {

// Crockford's base32: no I, L, O, U; ascending in ASCII.
constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void append_base32(std::string& out, std::uint64_t value, int digits) {
  for (int i = digits - 1; i >= 0; --i) out += kAlphabet[(value >> (5 * i)) & 31];
}

std::uint64_t random_node() {
  std::uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
    // No entropy source: still differ across processes and restarts.
    std::random_device rd;
    v = (std::uint64_t{rd()} << 32) ^ rd() ^
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return v;
}

}  // namespace

SessionIdSource::SessionIdSource() : node_(random_node() & kNodeMask) {}

std::string SessionIdSource::next() {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return format(static_cast<std::uint64_t>(ms), node_, counter_.fetch_add(1, std::memory_order_relaxed));
}

std::string SessionIdSource::format(std::uint64_t unix_ms, std::uint64_t node, std::uint64_t counter) {
  std::string id;
  id.reserve(21);
  append_base32(id, unix_ms, 9);
  append_base32(id, node & kNodeMask, 8);
  append_base32(id, counter, 4);
  return id;
}

}  // namespace mailhook::telemetry
