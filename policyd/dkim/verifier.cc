// DKIM verification (verifier.h): RFC 6376 6.1 step by step.
#include "policyd/dkim/verifier.h"

#include <map>

#include "policyd/dkim/crypto.h"

namespace mailhook::policyd::dkim {

std::string_view result_name(Result r) {
  switch (r) {
    case Result::None: return "none";
    case Result::Pass: return "pass";
    case Result::Fail: return "fail";
    case Result::Neutral: return "neutral";
    case Result::TempError: return "temperror";
    case Result::PermError: return "permerror";
    case Result::Policy: return "policy";
  }
  return "";
}

std::vector<SignatureCheck> find_signatures(const SplitMessage& message, std::uint64_t now, const VerifyLimits& limits) {
  std::vector<SignatureCheck> out;
  for (const HeaderField& f : message.fields) {
    if (field_key(f) != "dkim-signature") continue;
    SignatureCheck c;
    c.raw = f.raw;
    if (out.size() >= limits.max_signatures) {
      c.result = Result::Policy;
      c.reason = "not verified: past --dkim-max-signatures " + std::to_string(limits.max_signatures);
      // What can be read of it, for the result table.
      ParsedSignature p = parse_signature(f.raw);
      c.parsed.domain = std::move(p.domain);
      c.parsed.selector = std::move(p.selector);
      c.parsed.algorithm = std::move(p.algorithm);
      out.push_back(std::move(c));
      continue;
    }
    c.parsed = parse_signature(f.raw);
    if (!c.parsed.signature) {
      c.result = c.parsed.unacceptable ? Result::Policy : Result::PermError;
      c.reason = c.parsed.error;
    } else if (const Signature& s = *c.parsed.signature; s.expires && *s.expires < now) {
      c.result = Result::PermError;  // RFC 6376 6.1.1: PERMFAIL (signature expired)
      c.reason = "signature expired (x=)";
    } else {
      c.key_name = s.selector + "._domainkey." + s.domain;  // RFC 6376 3.6.2.1
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<const HeaderField*> select_headers(const SplitMessage& message, const std::vector<std::string>& names,
                                               std::string_view self) {
  // Each name's fields, bottom first; taking one moves past it.
  std::map<std::string, std::vector<const HeaderField*>> by_name;
  for (auto it = message.fields.rbegin(); it != message.fields.rend(); ++it) {
    if (it->name.empty() || (!self.empty() && it->raw.data() == self.data())) continue;
    by_name[field_key(*it)].push_back(&*it);
  }
  std::map<std::string, std::size_t> taken;
  std::vector<const HeaderField*> out;
  out.reserve(names.size());
  for (const auto& n : names) {
    auto found = by_name.find(n);
    std::size_t& i = taken[n];
    if (found == by_name.end() || i >= found->second.size()) {
      out.push_back(nullptr);
    } else {
      out.push_back(found->second[i++]);
    }
  }
  return out;
}

std::string header_hash_input(const SplitMessage& message, const std::vector<std::string>& names,
                              std::string_view signature_field_blanked, Canon c, std::string_view self) {
  std::string data;
  for (const HeaderField* f : select_headers(message, names, self)) {
    if (f != nullptr) data += canonical_header(*f, c);
  }
  HeaderField signature;
  signature.raw = signature_field_blanked;
  signature.name = signature_field_blanked.substr(0, signature_field_blanked.find(':'));
  std::string h = canonical_header(signature, c);
  h.resize(h.size() - 2);  // RFC 6376 3.7: without the trailing CRLF
  data += h;
  return data;
}

std::string canonical_body_for(std::string_view body, Canon c, const std::optional<std::uint64_t>& length, bool& too_short) {
  std::string canon = canonical_body(body, c);
  too_short = false;
  if (length) {
    if (*length > canon.size()) {
      too_short = true;
    } else {
      canon.resize(static_cast<std::size_t>(*length));
    }
  }
  return canon;
}

void finish(SignatureCheck& check, const SplitMessage& message, const KeyAnswer& answer) {
  const Signature& sig = *check.parsed.signature;
  switch (answer.status) {
    case KeyAnswer::Status::Missing:
      check.result = Result::PermError;
      check.reason = "no key for signature (" + check.key_name + ")";
      return;
    case KeyAnswer::Status::TempFail:
      check.result = Result::TempError;
      check.reason = "key lookup failed: " + answer.error;
      return;
    case KeyAnswer::Status::Found: break;
  }
  std::optional<KeyRecord> key;
  std::string key_error;
  for (const auto& txt : answer.records) {
    ParsedKey k = parse_key_record(txt, sig);
    if (k.key) {
      key = std::move(k.key);
      break;
    }
    if (key_error.empty()) key_error = k.error;
  }
  if (!key) {
    check.result = Result::PermError;
    check.reason = key_error.empty() ? "no key for signature (" + check.key_name + ")" : key_error;
    return;
  }
  check.testing = key->testing;
  // RFC 6376 6.1.3: the body hash first.
  bool too_short = false;
  const std::string body = canonical_body_for(message.body, sig.body_canon, sig.length, too_short);
  if (too_short) {
    check.result = Result::Fail;
    check.reason = "l= is longer than the body";
    return;
  }
  if (sha256(body) != sig.bh) {
    check.result = Result::Fail;
    check.reason = "body hash did not verify";
    return;
  }
  const std::string data = header_hash_input(message, sig.headers, blank_b(check.raw, sig), sig.header_canon, check.raw);
  switch (verify_signature(*key, data, sig.b)) {
    case KeyCheck::Good:
      check.result = Result::Pass;
      check.reason.clear();
      return;
    case KeyCheck::Bad:
      check.result = Result::Fail;
      check.reason = "signature did not verify";
      return;
    case KeyCheck::Unusable:
      check.result = Result::PermError;
      check.reason = "p= is not a usable key";
      return;
    case KeyCheck::Weak:
      check.result = Result::Policy;
      check.reason = "an RSA key shorter than 1024 bits (RFC 8301 3.2)";
      return;
  }
}

}  // namespace mailhook::policyd::dkim
