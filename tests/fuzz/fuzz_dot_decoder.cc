// libFuzzer target: the DATA decoder. The first byte picks a split point;
// the result must not depend on it, and a message without a fault never
// holds a bare CR or LF (no smuggled line ends reach delivery).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mailcore/smtp/dot_decoder.h"

namespace {
struct Run {
  std::string out;
  std::size_t used = 0;
  bool done = false;
  mailhook::smtp::DotDecoder::Fault fault{};
};

Run run(std::string_view in, std::size_t split) {
  mailhook::smtp::DotDecoder d(1 << 16);
  Run r;
  r.used = d.feed(in.substr(0, split), r.out);
  if (!d.done()) r.used += d.feed(in.substr(split), r.out);
  r.done = d.done();
  r.fault = d.fault();
  return r;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t split = in.empty() ? 0 : data[0] % (in.size() + 1);
  const Run a = run(in, split);
  const Run b = run(in, in.size());
  if (a.out != b.out || a.used != b.used || a.done != b.done || a.fault != b.fault) __builtin_trap();
  if (a.fault == mailhook::smtp::DotDecoder::Fault::None) {
    for (std::size_t i = 0; i < a.out.size(); ++i) {
      if (a.out[i] == '\n' && (i == 0 || a.out[i - 1] != '\r')) __builtin_trap();
      if (a.out[i] == '\r' && (i + 1 >= a.out.size() || a.out[i + 1] != '\n')) __builtin_trap();
    }
  }
  return 0;
}
