// Parsing SPF records: see record.h.
#include "policyd/spf/record.h"

#include <algorithm>

namespace mailhook::policyd::spf {
namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lower(x) == lower(y);
         });
}

// RFC 7208 7.1 toplabel: ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ).
bool is_toplabel(std::string_view l) {
  if (l.empty() || !std::all_of(l.begin(), l.end(), [](char c) { return is_alnum(c) || c == '-'; })) return false;
  if (l.find('-') == std::string_view::npos) return std::any_of(l.begin(), l.end(), is_alpha);
  return is_alnum(l.front()) && is_alnum(l.back());
}

// domain-spec = macro-string domain-end; domain-end = ( "." toplabel [ "." ] ) / macro-expand
std::optional<MacroString> domain_spec(std::string_view text, std::string& error) {
  if (text.empty()) {
    error = "an empty domain-spec";
    return std::nullopt;
  }
  std::optional<MacroString> m = tokenize(text, false, error);
  if (!m) return std::nullopt;
  if (m->ends_with_expand) return m;
  std::string_view t = text;
  if (t.back() == '.') t.remove_suffix(1);
  const std::size_t dot = t.rfind('.');
  if (dot == std::string_view::npos || !is_toplabel(t.substr(dot + 1))) {
    error = "a domain-spec that does not end in a top label: " + std::string(text);
    return std::nullopt;
  }
  return m;
}

// "/N" with no leading zero and N <= width (RFC 7208 5.6).
std::optional<unsigned> cidr_length(std::string_view digits, unsigned width) {
  if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0') ||
      !std::all_of(digits.begin(), digits.end(), is_digit)) {
    return std::nullopt;
  }
  unsigned n = 0;
  for (char c : digits) n = n * 10 + static_cast<unsigned>(c - '0');
  if (n > width) return std::nullopt;
  return n;
}

bool all_digits(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_digit); }

// Splits a trailing dual-cidr-length off `rest` ("example.com/24//64").
bool take_dual_cidr(std::string_view& rest, Term& t, std::string& error) {
  std::size_t slash = rest.rfind('/');
  if (slash == std::string_view::npos || !all_digits(rest.substr(slash + 1))) return true;
  if (slash > 0 && rest[slash - 1] == '/') {
    std::optional<unsigned> n = cidr_length(rest.substr(slash + 1), 128);
    if (!n) {
      error = "a bad IPv6 CIDR length in " + t.text;
      return false;
    }
    t.cidr6 = *n;
    rest = rest.substr(0, slash - 1);
    slash = rest.rfind('/');
    if (slash == std::string_view::npos || !all_digits(rest.substr(slash + 1))) return true;
  }
  std::optional<unsigned> n = cidr_length(rest.substr(slash + 1), 32);
  if (!n) {
    error = "a bad IPv4 CIDR length in " + t.text;
    return false;
  }
  t.cidr4 = *n;
  rest = rest.substr(0, slash);
  return true;
}

bool parse_network(std::string_view rest, bool v4, Term& t, std::string& error) {
  const std::size_t slash = rest.find('/');
  const std::string_view address = rest.substr(0, slash);
  std::optional<net::Address> a = net::parse_address(address);
  // ip4 is a dotted quad; ip6 written as IPv6 (a v4-mapped ip6 network
  // still matches only IPv6 clients, whose mapped ones are IPv4 already).
  const bool written_v6 = address.find(':') != std::string_view::npos;
  if (!a || written_v6 == v4) {
    error = std::string("not an ") + (v4 ? "IPv4" : "IPv6") + " network: " + t.text;
    return false;
  }
  if (a->v4 && written_v6) {  // ::ffff:a.b.c.d in ip6: kept as IPv6 bytes, which no client has
    a->v4 = false;
    std::move_backward(a->bytes.begin(), a->bytes.begin() + 4, a->bytes.end());
    std::fill(a->bytes.begin(), a->bytes.begin() + 10, 0);
    a->bytes[10] = a->bytes[11] = 0xff;
  }
  unsigned bits = a->width();
  if (slash != std::string_view::npos) {
    std::optional<unsigned> n = cidr_length(rest.substr(slash + 1), a->width());
    if (!n) {
      error = "a bad CIDR length in " + t.text;
      return false;
    }
    bits = *n;
  }
  t.network = net::Cidr::of(*a, bits);
  return true;
}

// One directive (RFC 7208 4.6.1): [qualifier] mechanism.
bool parse_directive(std::string_view text, Term& t, std::string& error) {
  t.text = std::string(text);
  if (!text.empty() && std::string_view("+-~?").find(text[0]) != std::string_view::npos) {
    t.qualifier = text[0];
    text.remove_prefix(1);
  }
  std::size_t end = 0;
  while (end < text.size() && is_alnum(text[end])) ++end;
  const std::string_view name = text.substr(0, end);
  std::string_view rest = text.substr(end);
  static constexpr std::pair<std::string_view, Mechanism> kNames[] = {
      {"all", Mechanism::All}, {"include", Mechanism::Include}, {"a", Mechanism::A},
      {"mx", Mechanism::Mx},   {"ptr", Mechanism::Ptr},         {"ip4", Mechanism::Ip4},
      {"ip6", Mechanism::Ip6}, {"exists", Mechanism::Exists},
  };
  const auto* found = std::find_if(std::begin(kNames), std::end(kNames),
                                   [&](const auto& n) { return iequals(n.first, name); });
  if (found == std::end(kNames)) {
    error = "an unknown mechanism: " + t.text;
    return false;
  }
  t.mechanism = found->second;
  const bool colon = !rest.empty() && rest[0] == ':';
  switch (t.mechanism) {
    case Mechanism::All:
      if (!rest.empty()) break;
      return true;
    case Mechanism::Include:
    case Mechanism::Exists:
      if (!colon) break;
      t.domain = domain_spec(rest.substr(1), error);
      return t.domain.has_value();
    case Mechanism::A:
    case Mechanism::Mx:
      if (!take_dual_cidr(rest, t, error)) return false;
      [[fallthrough]];
    case Mechanism::Ptr:
      if (rest.empty()) return true;
      if (!colon) break;
      t.domain = domain_spec(rest.substr(1), error);
      return t.domain.has_value();
    case Mechanism::Ip4:
    case Mechanism::Ip6:
      if (!colon) break;
      return parse_network(rest.substr(1), t.mechanism == Mechanism::Ip4, t, error);
  }
  error = "a malformed mechanism: " + t.text;
  return false;
}

}  // namespace

bool Term::needs_dns() const {
  switch (mechanism) {
    case Mechanism::Include:
    case Mechanism::A:
    case Mechanism::Mx:
    case Mechanism::Ptr:
    case Mechanism::Exists: return true;
    case Mechanism::All:
    case Mechanism::Ip4:
    case Mechanism::Ip6: return false;
  }
  return false;
}

bool is_spf_record(std::string_view txt) {
  return txt.size() >= 6 && iequals(txt.substr(0, 6), "v=spf1") && (txt.size() == 6 || txt[6] == ' ');
}

std::optional<Record> parse_record(std::string_view txt, std::string& error) {
  if (!is_spf_record(txt)) {
    error = "not an SPF record";
    return std::nullopt;
  }
  Record r;
  std::size_t i = 6;
  while (i < txt.size()) {
    if (txt[i] == ' ') {
      ++i;
      continue;
    }
    const std::size_t end = std::min(txt.find(' ', i), txt.size());
    const std::string_view term = txt.substr(i, end - i);
    i = end;
    // A modifier: name "=" macro-string, name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
    std::size_t n = 0;
    if (is_alpha(term[0])) {
      n = 1;
      while (n < term.size() && (is_alnum(term[n]) || term[n] == '-' || term[n] == '_' || term[n] == '.')) ++n;
    }
    if (n > 0 && n < term.size() && term[n] == '=') {
      const std::string_view name = term.substr(0, n), value = term.substr(n + 1);
      if (iequals(name, "redirect") || iequals(name, "exp")) {
        std::optional<MacroString>& slot = iequals(name, "redirect") ? r.redirect : r.exp;
        if (slot) {  // RFC 7208 6: each at most once
          error = "a second " + std::string(name) + "= modifier";
          return std::nullopt;
        }
        slot = domain_spec(value, error);
        if (!slot) return std::nullopt;
      } else if (!tokenize(value, false, error)) {  // unknown modifiers are ignored, but must parse (6)
        return std::nullopt;
      }
      continue;
    }
    Term t;
    if (!parse_directive(term, t, error)) return std::nullopt;
    r.has_all = r.has_all || t.mechanism == Mechanism::All;
    r.terms.push_back(std::move(t));
  }
  return r;
}

}  // namespace mailhook::policyd::spf
