// An SPF record (RFC 7208 4.5, 4.6.1, 5, 6) parsed into its terms. A
// syntax error anywhere makes the whole record an error (permerror,
// RFC 7208 4.6): every macro-string, CIDR length and network is checked
// here, before any term is evaluated. Pure; never throws.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailcore/net/cidr.h"
#include "policyd/spf/macro.h"

namespace mailhook::policyd::spf {

enum class Mechanism : std::uint8_t {
  All,      // 5.1
  Include,  // 5.2
  A,        // 5.3
  Mx,       // 5.4
  Ptr,      // 5.5 (do not use, but evaluated)
  Ip4,      // 5.6
  Ip6,      // 5.6
  Exists,   // 5.7
};

struct Term {
  Mechanism mechanism = Mechanism::All;
  char qualifier = '+';          // + - ~ ? (4.6.2)
  std::string text;              // as written, for the result's "mechanism"
  std::optional<MacroString> domain;  // include, a, mx, ptr, exists; nullopt: the current domain
  unsigned cidr4 = 32, cidr6 = 128;   // a, mx: dual-cidr-length (5.6)
  std::optional<net::Cidr> network;   // ip4, ip6

  bool needs_dns() const;  // counts towards the 10 DNS lookups (4.6.4)
};

struct Record {
  std::vector<Term> terms;
  std::optional<MacroString> redirect;  // 6.1
  std::optional<MacroString> exp;       // 6.2
  bool has_all = false;                 // redirect is ignored then (6.1)
};

// RFC 7208 4.5: the version section "v=spf1" followed by a space or the
// end (case-insensitive, as ABNF strings are).
bool is_spf_record(std::string_view txt);

// nullopt and `error` (what is wrong, for logs) on any syntax error.
std::optional<Record> parse_record(std::string_view txt, std::string& error);

}  // namespace mailhook::policyd::spf
