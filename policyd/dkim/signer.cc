// DKIM signing (signer.h). The field is built with b= empty, hashed the
// way a verifier will hash it (verifier.h), then b= is filled in.
#include "policyd/dkim/signer.h"

#include "mailcore/smtp/base64.h"
#include "policyd/dkim/verifier.h"

namespace mailhook::policyd::dkim {
namespace {

std::string_view canon_name(Canon c) { return c == Canon::Simple ? "simple" : "relaxed"; }

// b= in lines of 72 after a CRLF + TAB fold, so no line passes 78 octets
// (RFC 5322 2.1.1); folding inside b= is ignored by verifiers (3.5).
std::string folded(std::string_view b64) {
  std::string out;
  for (std::size_t i = 0; i < b64.size(); i += 72) {
    if (i > 0) out += "\r\n\t ";
    out.append(b64.substr(i, 72));
  }
  return out;
}

}  // namespace

const std::vector<std::string>& default_signed_headers() {
  static const std::vector<std::string> names = {
      "from", "reply-to", "subject", "date", "to", "cc", "resent-date", "resent-from", "resent-to", "resent-cc",
      "in-reply-to", "references", "list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post",
      "list-owner", "list-archive", "message-id", "mime-version", "content-type", "content-transfer-encoding"};
  return names;
}

std::optional<std::string> sign_message(std::string_view message, const SignRequest& request, const PrivateKey& key,
                                        std::string& error) {
  if (!valid_dns_name(request.domain) || !valid_dns_name(request.selector)) {
    error = "domain and selector must be DNS names";
    return std::nullopt;
  }
  const std::string crlf = with_crlf(message);
  const SplitMessage split = split_message(crlf);
  std::vector<std::string> names;
  if (request.headers.empty()) {
    for (const auto& n : default_signed_headers()) {
      for (const HeaderField& f : split.fields) {
        if (field_key(f) == n) names.push_back(n);
      }
    }
    names.push_back("from");  // over-signed: an added From breaks the signature (RFC 6376 8.15)
  } else {
    for (const auto& n : request.headers) {
      if (n.empty() || n.find_first_of(": \t\r\n;") != std::string::npos) {
        error = "not a header field name in headers: " + n;
        return std::nullopt;
      }
      names.push_back(lower(n));
    }
  }
  bool from = false;
  for (const auto& n : names) from = from || n == "from";
  if (!from) {
    error = "headers must include From (RFC 6376 5.4)";
    return std::nullopt;
  }
  bool too_short = false;
  const std::string body = canonical_body_for(split.body, request.body_canon, {}, too_short);
  const std::string bh = smtp::base64_encode(sha256(body));
  // h= folded at its colons (RFC 6376 3.5 allows FWS around them).
  std::string h = "h=";
  std::size_t line = 1 + h.size();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0 && line + names[i].size() + 2 > 78) {
      h += ":\r\n\t";
      line = 1;
    } else if (i > 0) {
      h += ':';
      ++line;
    }
    h += names[i];
    line += names[i].size();
  }
  const bool ed = key.type() == KeyType::Ed25519;
  std::string value = "v=1; a=" + std::string(ed ? "ed25519-sha256" : "rsa-sha256") + "; c=" +
                      std::string(canon_name(request.header_canon)) + "/" + std::string(canon_name(request.body_canon)) +
                      ";\r\n\td=" + request.domain + "; s=" + request.selector + ";\r\n\tt=" +
                      std::to_string(request.timestamp) +
                      (request.expires ? "; x=" + std::to_string(*request.expires) : std::string()) +
                      (request.body_length ? "; l=" + std::to_string(body.size()) : std::string()) + ";\r\n\t" + h +
                      ";\r\n\tbh=" + bh + ";\r\n\tb=";
  const std::string field = "DKIM-Signature: " + value;
  const std::string data = header_hash_input(split, names, field, request.header_canon);
  const std::string b = key.sign(data);
  if (b.empty()) {
    error = "signing failed";
    return std::nullopt;
  }
  value += folded(smtp::base64_encode(b));
  return value;
}

}  // namespace mailhook::policyd::dkim
