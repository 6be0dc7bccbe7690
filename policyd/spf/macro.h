// SPF macro-strings (RFC 7208 7): their syntax and their expansion.
// tokenize() checks a macro-string once, when its record is parsed (a
// syntax error anywhere is a permerror, RFC 7208 4.6); expand() turns the
// tokens into text from the facts of one check. Pure: no DNS here; the %{p}
// name comes in through MacroFacts. Never throws, never reads past input.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailcore/net/cidr.h"

namespace mailhook::policyd::spf {

struct MacroToken {
  enum class Kind : std::uint8_t {
    Literal,  // text copied as it is
    Letter,   // %{letter transformers delimiters}
  };
  Kind kind = Kind::Literal;
  std::string literal;        // Literal: the text ("%%" -> "%", "%_" -> " ", "%-" -> "%20")
  char letter = 0;            // Letter: lower case, one of "slodiphcrtv"
  bool url_escape = false;    // the letter was written upper case (RFC 7208 7.3)
  unsigned keep = 0;          // DIGIT transformer: right-hand parts kept; 0: all
  bool reverse = false;       // "r" transformer
  std::string delimiters;     // "" means "."
};

struct MacroString {
  std::vector<MacroToken> tokens;
  bool ends_with_expand = false;  // the last item is a macro-expand (domain-end, RFC 7208 7.1)
};

// `explain`: the string is an explanation (exp= TXT text, RFC 7208 6.2):
// spaces and the letters c, r, t are allowed there only. nullopt and
// `error` on a syntax error.
std::optional<MacroString> tokenize(std::string_view text, bool explain, std::string& error);

// What the letters stand for in one check (RFC 7208 7.3).
struct MacroFacts {
  std::string_view sender;         // s: local-part@domain (postmaster@ when no local-part)
  std::string_view local_part;     // l
  std::string_view sender_domain;  // o
  std::string_view domain;         // d: the domain being checked now
  std::string_view helo;           // h
  std::string_view receiver;       // r: the checking host's name ("unknown")
  const net::Address* ip = nullptr;  // i, c, v
  std::int64_t now = 0;            // t: seconds since the epoch
  std::function<std::string()> validated_name;  // p: may ask DNS (see check.cc)
};

std::string expand(const MacroString& m, const MacroFacts& facts);

// The value of one letter before transformers ("i" of 2001:db8::1 is
// "2.0.0.1.0.d.b.8.0.0.0…1" nibble by nibble).
std::string letter_value(char letter, const MacroFacts& facts);

// RFC 3986 2.3: every octet outside ALPHA DIGIT "-" "." "_" "~" as %XX.
std::string url_escape(std::string_view text);

}  // namespace mailhook::policyd::spf
