// libFuzzer target: the DMARC record parser (policyd/dmarc/record.cc) fed
// whatever a zone owner could publish at _dmarc.<domain>, then the result
// through the policy rules. It never reads past the input, and a valid
// record is self-consistent (pct in 0..100, a disposition no stronger
// than the policy).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policyd/dmarc/evaluate.h"
#include "policyd/dmarc/record.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mailhook::policyd::dmarc;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const ParsedRecord p = parse_record(text);
  if (p.status == RecordStatus::Invalid && p.error.empty()) __builtin_trap();
  if (p.status != RecordStatus::Valid) return 0;
  if (p.record.percent < 0 || p.record.percent > 100) __builtin_trap();
  Message m;
  m.from_domain = "a.example.com";
  m.from_org_domain = "example.com";
  m.spf.push_back({"pass", "other.example", "other.example"});
  for (int sample : {0, 50, 99}) {
    for (bool at_org : {false, true}) {
      const Verdict v = evaluate(p.record, at_org, m, sample);
      if (v.result != Result::Fail) __builtin_trap();
      if (static_cast<int>(v.disposition) > static_cast<int>(v.policy)) __builtin_trap();
    }
  }
  return 0;
}
