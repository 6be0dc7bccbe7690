// DKIM verification of one message (RFC 6376 6), split where a DNS
// lookup goes: find_signatures() says which key records are needed,
// the caller fetches them however it likes (policyd: the worker's c-ares
// resolver, yielding), then finish() computes each result. Pure: the
// clock and the key answers come in as arguments. Never blocks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "policyd/dkim/canon.h"
#include "policyd/dkim/signature.h"

namespace mailhook::policyd::dkim {

// RFC 8601 2.7.1 result names.
enum class Result : std::uint8_t { None, Pass, Fail, Neutral, TempError, PermError, Policy };
std::string_view result_name(Result r);

// What DNS said about selector._domainkey.domain.
struct KeyAnswer {
  enum class Status : std::uint8_t {
    Found,      // TXT records in `records`
    Missing,    // NXDOMAIN, or no TXT record: permerror (RFC 6376 6.1.2)
    TempFail,   // SERVFAIL, timeout, no resolver: temperror
  };
  Status status = Status::TempFail;
  std::vector<std::string> records;  // each TXT record, its strings joined
  std::string error;                 // for TempFail
};

struct SignatureCheck {
  ParsedSignature parsed;
  std::string_view raw;        // the field in the message
  std::string key_name;        // "" when no lookup is needed (already decided)
  Result result = Result::None;
  std::string reason;          // why not pass
  bool testing = false;        // the key has t=y (RFC 6376 3.6.1)
};

struct VerifyLimits {
  std::size_t max_signatures = 8;  // later ones get Policy (RFC 6376 6.1: verifiers SHOULD limit)
};

// Every DKIM-Signature field, top to bottom, parsed; those already
// decided (bad syntax, rsa-sha1, expired at `now`, past the limit) carry
// their result, the others the key name to look up.
std::vector<SignatureCheck> find_signatures(const SplitMessage& message, std::uint64_t now, const VerifyLimits& limits);

// Decides one check that needs its key.
void finish(SignatureCheck& check, const SplitMessage& message, const KeyAnswer& key);

// The fields h= names, each the last one not yet taken (RFC 6376 5.4.2);
// nullptr for a name with none left (it hashes as nothing: over-signing).
// `self`, the signature being verified, is never one of them: it did not
// exist when it was made (RFC 6376 5.4).
std::vector<const HeaderField*> select_headers(const SplitMessage& message, const std::vector<std::string>& names,
                                               std::string_view self = {});

// The data the signature covers (RFC 6376 3.7): the selected fields, then
// the DKIM-Signature field itself with b= empty, without its CRLF.
std::string header_hash_input(const SplitMessage& message, const std::vector<std::string>& names,
                              std::string_view signature_field_blanked, Canon c, std::string_view self = {});

// The body hash input after canonicalization and l= (nullopt: l= is longer than the body).
std::string canonical_body_for(std::string_view body, Canon c, const std::optional<std::uint64_t>& length, bool& too_short);

}  // namespace mailhook::policyd::dkim
