// DMARC policy records (RFC 7489 6.3, 6.4): the TXT text at _dmarc.<domain>
// into a plain struct. Pure: no DNS, no Lua, no clock; hostile text gives
// a status, never a read past the input, in time linear in its length
// (the DNS message bounds that length). Reporting tags (rua, ruf, fo, rf,
// ri) are checked for presence only: aggregate and failure reports are out
// of scope.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mailhook::policyd::dmarc {

// RFC 7489 6.3 "p": what the Domain Owner asks for on failure.
enum class Policy : std::uint8_t {
  None,        // monitor only
  Quarantine,  // treat as suspicious
  Reject,      // refuse during the SMTP transaction
};

// RFC 7489 3.1 identifier alignment mode (adkim=, aspf=).
enum class Alignment : std::uint8_t {
  Relaxed,  // "r": same Organizational Domain
  Strict,   // "s": the same domain, exactly
};

struct Record {
  Policy policy = Policy::None;                // p=
  std::optional<Policy> subdomain_policy;      // sp=, when given
  Alignment dkim_alignment = Alignment::Relaxed;  // adkim=
  Alignment spf_alignment = Alignment::Relaxed;   // aspf=
  int percent = 100;                           // pct=, 0..100
  bool policy_defaulted = false;  // p= was invalid or missing, rescued by rua= (6.6.3 step 5)
};

enum class RecordStatus : std::uint8_t {
  Valid,     // a DMARC record, `record` filled
  NotDmarc,  // does not start with v=DMARC1: discarded (6.6.3 step 3)
  Invalid,   // starts with v=DMARC1 but cannot be applied: permerror
};

struct ParsedRecord {
  RecordStatus status = RecordStatus::NotDmarc;
  Record record;
  std::string error;  // why, for Invalid (for logs; fixed text, no record bytes)
};

ParsedRecord parse_record(std::string_view text);

std::string_view policy_name(Policy p);  // "none", "quarantine", "reject"
// RFC 7489 6.3 "pct": the policy for a message outside the sample.
Policy next_lower(Policy p);

}  // namespace mailhook::policyd::dmarc
