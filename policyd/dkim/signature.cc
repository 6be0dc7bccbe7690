// DKIM-Signature and key record parsing (signature.h). Each refusal
// names the RFC rule it comes from; the verifier turns it into permerror.
#include "policyd/dkim/signature.h"

#include <limits>

#include "mailcore/smtp/base64.h"
#include "policyd/dkim/tag_list.h"

namespace mailhook::policyd::dkim {
namespace {

// Colon-separated lists (h=, s=, t=), each item without whitespace.
std::vector<std::string> colon_list(std::string_view value) {
  std::vector<std::string> out;
  const std::string flat = without_whitespace(value);
  std::size_t start = 0;
  while (start <= flat.size()) {
    const std::size_t end = std::min(flat.find(':', start), flat.size());
    out.push_back(flat.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// A decimal number; nullopt when it is not one. Past 2^64-1 it saturates
// (an l= longer than any body, an x= in the far future).
std::optional<std::uint64_t> number(std::string_view v) {
  if (v.empty() || v.size() > 76) return std::nullopt;  // RFC 6376 3.5: l= has at most 76 digits
  std::uint64_t n = 0;
  for (const char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    n = n > (std::numeric_limits<std::uint64_t>::max() - d) / 10 ? std::numeric_limits<std::uint64_t>::max() : n * 10 + d;
  }
  return n;
}

bool contains(const std::vector<std::string>& list, std::string_view item) {
  for (const auto& s : list) {
    if (s == item) return true;
  }
  return false;
}

std::optional<Canon> canon_of(std::string_view s) {
  if (s == "simple") return Canon::Simple;
  if (s == "relaxed") return Canon::Relaxed;
  return std::nullopt;
}

}  // namespace

std::string_view algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::RsaSha256: return "rsa-sha256";
    case Algorithm::Ed25519Sha256: return "ed25519-sha256";
    case Algorithm::RsaSha1: return "rsa-sha1";
  }
  return "";
}

bool valid_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (!ok || ++label > 63) {
      return false;
    }
  }
  return label > 0;
}

ParsedSignature parse_signature(std::string_view raw) {
  ParsedSignature out;
  const std::size_t colon = raw.find(':');
  if (colon == std::string_view::npos) {
    out.error = "not a header field";
    return out;
  }
  const std::size_t base = colon + 1;
  std::string error;
  std::optional<std::vector<Tag>> tags = parse_tag_list(raw.substr(base), error);
  if (!tags) {
    out.error = "DKIM-Signature syntax: " + error;
    return out;
  }
  auto tag = [&](std::string_view name) { return find_tag(*tags, name); };
  if (const Tag* d = tag("d")) out.domain = lower(d->value);
  if (const Tag* s = tag("s")) out.selector = s->value;
  if (const Tag* a = tag("a")) out.algorithm = a->value;
  // RFC 6376 6.1.1: the required tags.
  for (const char* required : {"v", "a", "b", "bh", "d", "h", "s"}) {
    if (tag(required) == nullptr) {
      out.error = std::string("missing required tag ") + required + "=";
      return out;
    }
  }
  if (tag("v")->value != "1") {
    out.error = "unsupported version v=" + tag("v")->value;
    return out;
  }
  Signature sig;
  sig.algorithm_text = out.algorithm;
  if (out.algorithm == "rsa-sha256") {
    sig.algorithm = Algorithm::RsaSha256;
  } else if (out.algorithm == "ed25519-sha256") {
    sig.algorithm = Algorithm::Ed25519Sha256;
  } else if (out.algorithm == "rsa-sha1") {
    // RFC 8301 3.1: "Verifiers MUST NOT consider signatures using RSA-SHA1 at
    // any time as valid signatures." Well formed, refused by policy.
    out.unacceptable = true;
    out.error = "rsa-sha1 is not acceptable (RFC 8301 3.1)";
    return out;
  } else {
    out.error = "unsupported algorithm a=" + out.algorithm;
    return out;
  }
  if (!valid_dns_name(out.domain)) {
    out.error = "d= is not a domain name";
    return out;
  }
  if (!valid_dns_name(out.selector)) {
    out.error = "s= is not a selector";
    return out;
  }
  sig.domain = out.domain;
  sig.selector = out.selector;
  std::optional<std::string> b = smtp::base64_decode(without_whitespace(tag("b")->value));
  std::optional<std::string> bh = smtp::base64_decode(without_whitespace(tag("bh")->value));
  if (!b || b->empty()) {
    out.error = "b= is not base64";
    return out;
  }
  if (!bh || bh->size() != 32) {
    out.error = "bh= is not a base64 SHA-256 digest";
    return out;
  }
  sig.b = std::move(*b);
  sig.bh = std::move(*bh);
  sig.b_begin = base + tag("b")->value_begin;
  sig.b_end = base + tag("b")->value_end;
  if (const Tag* c = tag("c")) {
    const std::string v = without_whitespace(c->value);
    const std::size_t slash = v.find('/');
    const std::optional<Canon> h = canon_of(v.substr(0, slash));
    const std::optional<Canon> bd = slash == std::string::npos ? Canon::Simple : canon_of(v.substr(slash + 1));
    if (!h || !bd) {
      out.error = "unknown canonicalization c=" + c->value;
      return out;
    }
    sig.header_canon = *h;
    sig.body_canon = *bd;
  }
  for (std::string& name : colon_list(tag("h")->value)) {
    if (name.empty()) {
      out.error = "an empty header name in h=";
      return out;
    }
    sig.headers.push_back(lower(name));
  }
  // RFC 6376 6.1.1: "If the h= tag does not include the From header field,
  // the Verifier MUST ignore the DKIM-Signature header field and return
  // PERMFAIL (From field not signed)."
  if (!contains(sig.headers, "from")) {
    out.error = "From field not signed";
    return out;
  }
  if (const Tag* i = tag("i")) {
    const std::size_t at = i->value.rfind('@');
    if (at == std::string::npos) {
      out.error = "i= has no '@'";
      return out;
    }
    const std::string idomain = lower(i->value.substr(at + 1));
    // RFC 6376 3.5: i='s domain is d= or a subdomain of it.
    const bool sub = idomain.size() > sig.domain.size() &&
                     idomain.compare(idomain.size() - sig.domain.size(), sig.domain.size(), sig.domain) == 0 &&
                     idomain[idomain.size() - sig.domain.size() - 1] == '.';
    if (idomain != sig.domain && !sub) {
      out.error = "i= is not in d= (domain mismatch)";
      return out;
    }
    sig.identity = i->value;
  } else {
    sig.identity = "@" + sig.domain;
  }
  if (const Tag* q = tag("q")) {
    if (!contains(colon_list(q->value), "dns/txt")) {
      out.error = "unsupported query method q=" + q->value;
      return out;
    }
  }
  struct Num {
    const char* name;
    std::optional<std::uint64_t>* into;
  };
  for (const Num& n : {Num{"l", &sig.length}, Num{"t", &sig.timestamp}, Num{"x", &sig.expires}}) {
    if (const Tag* t = tag(n.name)) {
      *n.into = number(t->value);
      if (!*n.into) {
        out.error = std::string(n.name) + "= is not a number";
        return out;
      }
    }
  }
  // RFC 6376 3.5: "the x= tag MUST be greater than the t= tag".
  if (sig.timestamp && sig.expires && *sig.expires < *sig.timestamp) {
    out.error = "x= is before t=";
    return out;
  }
  out.signature = std::move(sig);
  return out;
}

std::string blank_b(std::string_view raw, const Signature& sig) {
  std::string out(raw.substr(0, sig.b_begin));
  out.append(raw.substr(sig.b_end));
  return out;
}

ParsedKey parse_key_record(std::string_view txt, const Signature& sig) {
  ParsedKey out;
  std::string error;
  std::optional<std::vector<Tag>> tags = parse_tag_list(txt, error);
  if (!tags) {
    out.error = "key record syntax: " + error;
    return out;
  }
  auto tag = [&](std::string_view name) { return find_tag(*tags, name); };
  // RFC 6376 3.6.1: "Records beginning with a v= tag with any other value
  // MUST be discarded."
  if (const Tag* v = tag("v"); v && v->value != "DKIM1") {
    out.error = "key record v=" + v->value + " is not DKIM1";
    return out;
  }
  KeyRecord key;
  if (const Tag* h = tag("h")) {
    const std::vector<std::string> hashes = colon_list(h->value);
    if (!contains(hashes, "sha256")) {
      out.error = "the key does not allow sha256 (h=" + h->value + ")";
      return out;
    }
  }
  const std::string k = tag("k") ? tag("k")->value : "rsa";
  if (k == "rsa") {
    key.type = KeyType::Rsa;
  } else if (k == "ed25519") {
    key.type = KeyType::Ed25519;
  } else {
    out.error = "unknown key type k=" + k;
    return out;
  }
  const bool wants_ed = sig.algorithm == Algorithm::Ed25519Sha256;
  if (wants_ed != (key.type == KeyType::Ed25519)) {
    out.error = "key type k=" + k + " does not match a=" + std::string(algorithm_name(sig.algorithm));
    return out;
  }
  if (const Tag* s = tag("s")) {
    const std::vector<std::string> services = colon_list(s->value);
    if (!contains(services, "*") && !contains(services, "email")) {
      out.error = "the key is not for email (s=" + s->value + ")";
      return out;
    }
  }
  if (const Tag* t = tag("t")) {
    const std::vector<std::string> flags = colon_list(t->value);
    key.testing = contains(flags, "y");
    key.strict = contains(flags, "s");
  }
  const Tag* p = tag("p");
  if (p == nullptr) {
    out.error = "key record without p=";
    return out;
  }
  const std::string p64 = without_whitespace(p->value);
  if (p64.empty()) {
    out.error = "key revoked";  // RFC 6376 3.6.1: an empty p= means revoked
    return out;
  }
  std::optional<std::string> der = smtp::base64_decode(p64);
  if (!der || der->empty()) {
    out.error = "p= is not base64";
    return out;
  }
  if (key.type == KeyType::Ed25519 && der->size() != 32) {
    out.error = "an Ed25519 key is 32 bytes (RFC 8463 4)";
    return out;
  }
  key.public_key = std::move(*der);
  // RFC 6376 3.6.1 t=s: "the i= domain MUST NOT be a subdomain of d=".
  if (key.strict) {
    const std::size_t at = sig.identity.rfind('@');
    if (lower(sig.identity.substr(at + 1)) != sig.domain) {
      out.error = "the key is strict (t=s) and i= is a subdomain of d=";
      return out;
    }
  }
  out.key = std::move(key);
  return out;
}

}  // namespace mailhook::policyd::dkim
