// The DKIM-Signature header field (RFC 6376 3.5) and the key record in
// DNS (RFC 6376 3.6.1, RFC 8463 3) as plain structs, parsed and checked
// against the RFCs' MUSTs. Pure: no crypto, no DNS, no clock. A bad field
// gives a reason, never an exception.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policyd/dkim/canon.h"

namespace mailhook::policyd::dkim {

enum class Algorithm : std::uint8_t {
  RsaSha256,      // RFC 6376 3.3.2
  Ed25519Sha256,  // RFC 8463 3
  RsaSha1,        // RFC 6376 3.3.1; not acceptable since RFC 8301 3.1
};
std::string_view algorithm_name(Algorithm a);

struct Signature {
  Algorithm algorithm = Algorithm::RsaSha256;
  std::string algorithm_text;          // a= as written (for results of unknown ones)
  std::string b;                       // the signature, decoded
  std::string bh;                      // the body hash, decoded
  Canon header_canon = Canon::Simple;  // c=, default simple/simple
  Canon body_canon = Canon::Simple;
  std::string domain;                  // d=, lower case
  std::string selector;                // s=
  std::vector<std::string> headers;    // h=, lower case, in order
  std::string identity;                // i=, default "@" + d
  std::optional<std::uint64_t> length; // l=
  std::optional<std::uint64_t> timestamp;  // t=
  std::optional<std::uint64_t> expires;    // x=
  // Offsets of b='s value in the field's raw text (from the ':' on
  // excluded: see blank_b).
  std::size_t b_begin = 0, b_end = 0;
};

// The verdict of parsing one DKIM-Signature field.
struct ParsedSignature {
  std::optional<Signature> signature;  // set when usable
  std::string domain, selector, algorithm;  // as far as they could be read, for the result
  std::string error;                   // why not usable (permerror)
  bool unacceptable = false;           // well formed, refused by policy (rsa-sha1: RFC 8301)
};

// `raw` is the whole header field "DKIM-Signature: ..." as in the message.
ParsedSignature parse_signature(std::string_view raw);

// The field with b='s value removed (RFC 6376 3.7: "the value of the b=
// tag (including all surrounding whitespace) is deleted"), for hashing.
std::string blank_b(std::string_view raw, const Signature& sig);

enum class KeyType : std::uint8_t { Rsa, Ed25519 };

struct KeyRecord {
  KeyType type = KeyType::Rsa;
  std::string public_key;   // p=, decoded: DER SubjectPublicKeyInfo / RSAPublicKey, or 32 raw Ed25519 bytes
  bool testing = false;     // t=y
  bool strict = false;      // t=s: i= must be in d= itself, not a subdomain
};

struct ParsedKey {
  std::optional<KeyRecord> key;
  std::string error;        // permerror reason (revoked, bad syntax, wrong service, …)
};

// One TXT record (its strings joined) checked against the signature that
// names it: v=, h= (must allow the hash), k= (must match a=), s=, p=.
ParsedKey parse_key_record(std::string_view txt, const Signature& sig);

// A domain or selector as DNS labels of letters, digits, '-' and '_'
// (RFC 6376 3.1, 3.5 "d=" and "s="); keeps odd bytes out of queries and logs.
bool valid_dns_name(std::string_view name);

}  // namespace mailhook::policyd::dkim
