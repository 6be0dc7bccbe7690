// DMARC alignment, result and disposition (RFC 7489 3.1, 6.6.2-6.6.4).
// Pure functions over already-found facts; nothing here looks anything up.
#include "policyd/dmarc/evaluate.h"

namespace mailhook::policyd::dmarc {
namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool same_domain(std::string_view a, std::string_view b) {
  if (!a.empty() && a.back() == '.') a.remove_suffix(1);
  if (!b.empty() && b.back() == '.') b.remove_suffix(1);
  if (a.size() != b.size() || a.empty()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Only a "pass" authenticates an identifier (RFC 7489 4.2).
bool any_aligned(const std::vector<Identifier>& ids, const Message& m, Alignment mode) {
  for (const Identifier& id : ids) {
    if (id.result == "pass" && aligned(id, m.from_domain, m.from_org_domain, mode)) return true;
  }
  return false;
}

}  // namespace

std::string_view result_name(Result r) {
  switch (r) {
    case Result::Pass: return "pass";
    case Result::Fail: return "fail";
    case Result::None: return "none";
    case Result::TempError: return "temperror";
    case Result::PermError: return "permerror";
  }
  return "none";
}

bool aligned(const Identifier& id, std::string_view from_domain, std::string_view from_org_domain, Alignment mode) {
  switch (mode) {
    case Alignment::Strict: return same_domain(id.domain, from_domain);
    case Alignment::Relaxed: return same_domain(id.org_domain, from_org_domain);
  }
  return false;
}

Verdict without_policy(Result result, const Message& m) {
  Verdict v;
  v.result = result;
  // Relaxed is the default mode (RFC 7489 6.3) when there is no record to say.
  v.spf_aligned = any_aligned(m.spf, m, Alignment::Relaxed);
  v.dkim_aligned = any_aligned(m.dkim, m, Alignment::Relaxed);
  return v;
}

Verdict evaluate(const Record& record, bool found_at_org, const Message& m, int sample) {
  Verdict v;
  v.has_policy = true;
  v.spf_aligned = any_aligned(m.spf, m, record.spf_alignment);
  v.dkim_aligned = any_aligned(m.dkim, m, record.dkim_alignment);
  // RFC 7489 6.6.3 step 6 / 6.3 "sp": a record found at the Organizational
  // Domain for a From domain below it applies sp= (p= when sp= is absent).
  const bool subdomain = found_at_org && !same_domain(m.from_domain, m.from_org_domain);
  v.policy = subdomain && record.subdomain_policy ? *record.subdomain_policy : record.policy;
  // RFC 7489 6.6.2: DMARC passes when SPF or DKIM passes aligned.
  v.result = v.spf_aligned || v.dkim_aligned ? Result::Pass : Result::Fail;
  if (v.result == Result::Pass) {
    v.disposition = Policy::None;
  } else if (sample < record.percent) {
    v.disposition = v.policy;
  } else {
    // RFC 7489 6.6.4 and 6.3 "pct": outside the sample, the next-lower
    // policy (reject -> quarantine, quarantine -> none).
    v.disposition = next_lower(v.policy);
  }
  return v;
}

}  // namespace mailhook::policyd::dmarc
