// DMARC record parsing per RFC 7489 6.4 (ABNF): tag-value pairs split by
// ";" with optional whitespace, v=DMARC1 first and case-sensitive; tag
// names and keyword values are ABNF strings, so case-insensitive. Unknown
// tags are ignored (6.3). Never reads past `text`.
#include "policyd/dmarc/record.h"

#include <array>
#include <charconv>
#include <vector>

namespace mailhook::policyd::dmarc {
namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_wsp(s.back())) s.remove_suffix(1);
  return s;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::optional<Policy> parse_policy(std::string_view v) {
  if (iequals(v, "none")) return Policy::None;
  if (iequals(v, "quarantine")) return Policy::Quarantine;
  if (iequals(v, "reject")) return Policy::Reject;
  return std::nullopt;
}

std::optional<Alignment> parse_alignment(std::string_view v) {
  if (iequals(v, "r")) return Alignment::Relaxed;
  if (iequals(v, "s")) return Alignment::Strict;
  return std::nullopt;
}

// RFC 7489 6.4: dmarc-percent = "pct" *WSP "=" *WSP 1*3DIGIT, 0..100.
std::optional<int> parse_percent(std::string_view v) {
  if (v.empty() || v.size() > 3) return std::nullopt;
  int n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size() || n < 0 || n > 100) return std::nullopt;
  return n;
}

// RFC 7489 6.4: dmarc-uri = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ],
// a comma-separated list. Only "is there one that looks like a URI"
// matters here (6.6.3 step 5): a scheme, ":", something after it.
bool has_valid_uri(std::string_view list) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    std::string_view uri = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    const std::size_t colon = uri.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 >= uri.size()) continue;
    bool scheme = (uri[0] >= 'a' && uri[0] <= 'z') || (uri[0] >= 'A' && uri[0] <= 'Z');
    for (std::size_t i = 1; i < colon && scheme; ++i) {
      const char c = uri[i];
      scheme = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
               c == '.';
    }
    if (scheme) return true;
  }
  return false;
}

ParsedRecord invalid(std::string error) {
  ParsedRecord r;
  r.status = RecordStatus::Invalid;
  r.error = std::move(error);
  return r;
}

}  // namespace

ParsedRecord parse_record(std::string_view text) {
  // Split into tag-value pairs first; an empty pair is allowed only at the
  // end (a trailing ";", RFC 7489 6.4: dmarc-record ends in [dmarc-sep]).
  std::vector<std::pair<std::string_view, std::string_view>> tags;
  std::string_view rest = text;
  bool first = true;
  while (true) {
    const std::size_t semi = rest.find(';');
    const std::string_view pair = trim(rest.substr(0, semi));
    const bool last = semi == std::string_view::npos;
    if (pair.empty()) {
      if (first) return ParsedRecord{};  // nothing, not even v=
      // ";;" is outside the ABNF, but published often enough that
      // refusing it would be a permerror for working domains.
      if (last) break;
      rest.remove_prefix(semi + 1);
      continue;
    }
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      if (first) return ParsedRecord{};
      return invalid("a tag without '='");
    }
    const std::string_view name = trim(pair.substr(0, eq));
    const std::string_view value = trim(pair.substr(eq + 1));
    if (first) {
      // RFC 7489 6.4: dmarc-version = "v" *WSP "=" *WSP %x44 %x4d %x41
      // %x52 %x43 %x31: v first, and DMARC1 in upper case exactly.
      if (name != "v" || value != "DMARC1") return ParsedRecord{};
      first = false;
    } else {
      tags.emplace_back(name, value);
    }
    if (last) break;
    rest.remove_prefix(semi + 1);
  }

  ParsedRecord out;
  out.status = RecordStatus::Valid;
  Record& r = out.record;
  bool have_policy = false, bad_policy = false, bad_subdomain = false, rua = false;
  // A tag we act on given twice is ambiguous; only those are tracked, so
  // the work stays linear however many unknown tags a record carries.
  static constexpr std::array<std::string_view, 6> kActed = {"p", "sp", "adkim", "aspf", "pct", "rua"};
  std::array<bool, kActed.size()> seen{};
  for (const auto& [name, value] : tags) {
    for (std::size_t i = 0; i < kActed.size(); ++i) {
      if (!iequals(name, kActed[i])) continue;
      if (seen[i]) return invalid("a tag given twice");
      seen[i] = true;
    }
    if (iequals(name, "p")) {
      const auto p = parse_policy(value);
      have_policy = p.has_value();
      bad_policy = !p;
      if (p) r.policy = *p;
    } else if (iequals(name, "sp")) {
      const auto p = parse_policy(value);
      bad_subdomain = !p;
      r.subdomain_policy = p;
    } else if (iequals(name, "adkim") || iequals(name, "aspf")) {
      const auto a = parse_alignment(value);
      if (!a) return invalid(iequals(name, "adkim") ? "adkim is neither r nor s" : "aspf is neither r nor s");
      (iequals(name, "adkim") ? r.dkim_alignment : r.spf_alignment) = *a;
    } else if (iequals(name, "pct")) {
      const auto n = parse_percent(value);
      if (!n) return invalid("pct is not 0..100");
      r.percent = *n;
    } else if (iequals(name, "rua")) {
      rua = has_valid_uri(value);
    }
    // RFC 7489 6.3: "Unknown tags MUST be ignored" (ruf, fo, rf, ri are
    // reporting tags we do not act on; np is RFC 9091, not applied).
  }
  // RFC 7489 6.6.3 step 5: no valid p (or an invalid sp) is applied as
  // p=none when rua names a valid URI; otherwise no DMARC processing.
  if (!have_policy || bad_policy || bad_subdomain) {
    if (!rua) return invalid(!have_policy && !bad_policy ? "no p= tag" : bad_policy ? "p is not none, quarantine or reject"
                                                                                      : "sp is not none, quarantine or reject");
    r.policy = Policy::None;
    r.subdomain_policy.reset();
    r.policy_defaulted = true;
  }
  return out;
}

std::string_view policy_name(Policy p) {
  switch (p) {
    case Policy::None: return "none";
    case Policy::Quarantine: return "quarantine";
    case Policy::Reject: return "reject";
  }
  return "none";
}

Policy next_lower(Policy p) {
  switch (p) {
    case Policy::None: return Policy::None;
    case Policy::Quarantine: return Policy::None;
    case Policy::Reject: return Policy::Quarantine;
  }
  return Policy::None;
}

}  // namespace mailhook::policyd::dmarc
