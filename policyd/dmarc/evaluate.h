// DMARC evaluation (RFC 7489 3.1, 6.6): identifier alignment, the DMARC
// result and the disposition for one message, from a record that was
// already found and the SPF/DKIM results the caller computed. Pure: the
// Organizational Domains and the pct sample are inputs, so every rule is
// unit-tested without DNS, the PSL or randomness.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "policyd/dmarc/record.h"

namespace mailhook::policyd::dmarc {

// One authenticated identifier: an SPF result for the MAIL FROM (or HELO)
// domain, or one DKIM signature's result for its d= domain.
struct Identifier {
  std::string result;      // "pass" counts; anything else does not
  std::string domain;      // lower case, no trailing dot
  std::string org_domain;  // its Organizational Domain
};

struct Message {
  std::string from_domain;      // RFC 5322.From domain, lower case
  std::string from_org_domain;  // its Organizational Domain
  std::vector<Identifier> spf;  // zero or one
  std::vector<Identifier> dkim;
};

enum class Result : std::uint8_t { Pass, Fail, None, TempError, PermError };
std::string_view result_name(Result r);

struct Verdict {
  Result result = Result::None;
  bool has_policy = false;   // a record applied (pass or fail)
  Policy policy = Policy::None;       // p= or sp=
  Policy disposition = Policy::None;  // what to do with this message
  bool spf_aligned = false;
  bool dkim_aligned = false;
};

// RFC 7489 3.1.1 / 3.1.2: strict is equality, relaxed the same
// Organizational Domain. Domains compare case-insensitively.
bool aligned(const Identifier& id, std::string_view from_domain, std::string_view from_org_domain, Alignment mode);

// RFC 7489 6.6.2 / 6.6.3 / 6.6.4 for a message whose policy record is
// `record`; `found_at_org` says it came from the Organizational Domain
// fallback (so sp= applies when the From domain is below it). `sample` is
// a number in 0..99: the message is inside pct= when sample < pct.
Verdict evaluate(const Record& record, bool found_at_org, const Message& m, int sample);

// The verdict when no record applies (none) or discovery failed
// (temperror / permerror): alignment is still reported.
Verdict without_policy(Result result, const Message& m);

}  // namespace mailhook::policyd::dmarc
