// libFuzzer target: the DNS answer parser, fed whatever a hostile or broken
// nameserver could send. It never reads past the buffer (ASan), never
// loops on compression pointers, and what it returns is self-consistent.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "policyd/dns/message.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mailhook::policyd::dns;
  std::string error;
  const auto m = parse_message(std::string_view(reinterpret_cast<const char*>(data), size), error);
  if (!m) {
    if (error.empty()) __builtin_trap();
    return 0;
  }
  for (const auto* section : {&m->answer, &m->authority, &m->additional}) {
    for (const Record& r : *section) {
      if (r.owner.size() > 4 * 255) __builtin_trap();  // escaped, at most \DDD per octet
      if (r.type == kA && r.address.find(':') != std::string::npos) __builtin_trap();
      (void)r.text();
    }
  }
  (void)address_of_reverse_name(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
