// policyd/dkim: tag lists, canonicalization (RFC 6376 3.4.5's examples),
// the RFC 8463 Appendix A test vectors, and sign/verify round trips with
// every verdict the verifier can give. Keys are made here with OpenSSL.
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "policyd/dkim/signer.h"
#include "policyd/dns/fake_resolver.h"
#include "policyd/dkim/tag_list.h"
#include "policyd/dkim/verifier.h"
#include "mailcore/smtp/base64.h"
#include "tests/unit/policyd/runtime_harness.h"

namespace mailhook::policyd::dkim {
namespace {

// ---------------------------------------------------------------- keys

struct TestKey {
  std::string pem;     // private, PKCS#8
  std::string record;  // the TXT record publishing it
};

TestKey make_key(KeyType type, int bits = 1024, std::string extra_tags = "") {
  EVP_PKEY* k = type == KeyType::Ed25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                                         : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits));
  TestKey out;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  out.pem.assign(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  std::string pub;
  if (type == KeyType::Ed25519) {
    std::size_t len = 32;
    pub.resize(len);
    EVP_PKEY_get_raw_public_key(k, reinterpret_cast<unsigned char*>(pub.data()), &len);
  } else {
    unsigned char* der = nullptr;
    const int len = i2d_PUBKEY(k, &der);
    pub.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
  }
  EVP_PKEY_free(k);
  out.record = std::string("v=DKIM1; k=") + (type == KeyType::Ed25519 ? "ed25519" : "rsa") + "; " + extra_tags +
               "p=" + smtp::base64_encode(pub);
  return out;
}

const TestKey& rsa_key() {
  static const TestKey k = make_key(KeyType::Rsa);
  return k;
}
const TestKey& ed_key() {
  static const TestKey k = make_key(KeyType::Ed25519);
  return k;
}

const std::string kMessage =
    "Received: from relay.example.org by mx.example.net; Fri, 11 Jul 2003 21:01:00 -0700\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner   ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?  \r\n"
    "\r\n"
    "Joe.\r\n"
    "\r\n";

struct Outcome {
  Result result = Result::None;
  std::string reason;
  bool testing = false;
};

// Verifies `message` whose one key record (or DNS failure) is `answer`.
std::vector<Outcome> verify(const std::string& message, const KeyAnswer& answer, std::uint64_t now = 1700000000,
                            std::size_t max_signatures = 8) {
  const SplitMessage split = split_message(message);
  std::vector<SignatureCheck> checks = find_signatures(split, now, VerifyLimits{.max_signatures = max_signatures});
  std::vector<Outcome> out;
  for (auto& c : checks) {
    if (!c.key_name.empty()) finish(c, split, answer);
    out.push_back({c.result, c.reason, c.testing});
  }
  return out;
}

KeyAnswer found(std::string record) {
  return KeyAnswer{.status = KeyAnswer::Status::Found, .records = {std::move(record)}, .error = ""};
}

std::string signed_message(const std::string& message, const TestKey& key, SignRequest r = {}) {
  if (r.domain.empty()) r.domain = "football.example.com";
  if (r.selector.empty()) r.selector = "sel";
  if (r.timestamp == 0) r.timestamp = 1690000000;
  std::string error;
  std::optional<PrivateKey> pk = PrivateKey::from_pem(key.pem, error);
  EXPECT_TRUE(pk) << error;
  std::optional<std::string> value = sign_message(message, r, *pk, error);
  EXPECT_TRUE(value) << error;
  return "DKIM-Signature: " + value.value_or("") + "\r\n" + message;
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const std::size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// ------------------------------------------------------------ tag lists

TEST(DkimTagList, ParsesTagsWithFoldingWhitespaceAndTrailingSemicolon) {
  std::string error;
  auto tags = parse_tag_list(" v=1;\r\n\ta = rsa-sha256 ; b=ab\r\n cd;", error);
  ASSERT_TRUE(tags) << error;
  ASSERT_EQ(tags->size(), 3u);
  EXPECT_EQ((*tags)[1].name, "a");
  EXPECT_EQ((*tags)[1].value, "rsa-sha256");
  EXPECT_EQ((*tags)[2].value, "ab\r\n cd");
  EXPECT_EQ(without_whitespace((*tags)[2].value), "abcd");
}

TEST(DkimTagList, RefusesDuplicatesBadNamesMissingEqualsAndControlBytes) {
  std::string error;
  EXPECT_FALSE(parse_tag_list("a=1; a=2", error));
  EXPECT_NE(error.find("twice"), std::string::npos);
  EXPECT_FALSE(parse_tag_list("1a=1", error));
  EXPECT_FALSE(parse_tag_list("a", error));
  EXPECT_FALSE(parse_tag_list(std::string("a=x\x01y", 5), error));
  EXPECT_TRUE(parse_tag_list("", error));
  EXPECT_TRUE(parse_tag_list("a=", error));
}

// ----------------------------------------------------- canonicalization

TEST(DkimCanon, Rfc6376Section345Examples) {
  const std::string message = "A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
  const SplitMessage m = split_message(message);
  ASSERT_EQ(m.fields.size(), 2u);
  EXPECT_EQ(canonical_header(m.fields[0], Canon::Relaxed) + canonical_header(m.fields[1], Canon::Relaxed),
            "a:X\r\nb:Y Z\r\n");
  EXPECT_EQ(canonical_body(m.body, Canon::Relaxed), " C\r\nD E\r\n");
  EXPECT_EQ(canonical_header(m.fields[0], Canon::Simple) + canonical_header(m.fields[1], Canon::Simple),
            "A: X\r\nB : Y\t\r\n\tZ  \r\n");
  EXPECT_EQ(canonical_body(m.body, Canon::Simple), " C \r\nD \t E\r\n");
}

TEST(DkimCanon, EmptyBodyIsOneCrlfForSimpleAndNothingForRelaxed) {
  EXPECT_EQ(canonical_body("", Canon::Simple), "\r\n");
  EXPECT_EQ(canonical_body("\r\n\r\n", Canon::Simple), "\r\n");
  EXPECT_EQ(canonical_body("", Canon::Relaxed), "");
  EXPECT_EQ(canonical_body(" \r\n\t\r\n", Canon::Relaxed), "");
  EXPECT_EQ(canonical_body("no line end", Canon::Simple), "no line end\r\n");
}

TEST(DkimCanon, BareLineFeedsBecomeCrlf) {
  EXPECT_EQ(with_crlf("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
}

TEST(DkimHeaders, EachNameTakesTheLastUnusedFieldAndOverSignedNamesTakeNothing) {
  const SplitMessage m = split_message("From: 1\r\nTo: a\r\nFrom: 2\r\n\r\n");
  auto sel = select_headers(m, {"from", "from", "from", "to"});
  ASSERT_EQ(sel.size(), 4u);
  EXPECT_EQ(sel[0]->raw, "From: 2");
  EXPECT_EQ(sel[1]->raw, "From: 1");
  EXPECT_EQ(sel[2], nullptr);
  EXPECT_EQ(sel[3]->raw, "To: a");
}

// ------------------------------------------------- RFC 8463 Appendix A

// A.3, with the keys of A.2: an ed25519-sha256 and an rsa-sha256 signature.
const std::string kRfc8463Message =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";
const std::string kRfc8463Ed25519Record = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const std::string kRfc8463RsaRecord =
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
    "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
    "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
    "Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

TEST(DkimRfc8463, BothPublishedSignaturesVerify) {
  const SplitMessage split = split_message(kRfc8463Message);
  std::vector<SignatureCheck> checks = find_signatures(split, 1528637909, {});
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_EQ(checks[0].key_name, "brisbane._domainkey.football.example.com");
  EXPECT_EQ(checks[1].key_name, "test._domainkey.football.example.com");
  finish(checks[0], split, found(kRfc8463Ed25519Record));
  finish(checks[1], split, found(kRfc8463RsaRecord));
  EXPECT_EQ(checks[0].result, Result::Pass) << checks[0].reason;
  EXPECT_EQ(checks[1].result, Result::Pass) << checks[1].reason;
}

TEST(DkimRfc8463, ATamperedSubjectFailsBoth) {
  const std::string m = replaced(kRfc8463Message, "Is dinner ready?", "Is dinner ready!");
  const SplitMessage split = split_message(m);
  std::vector<SignatureCheck> checks = find_signatures(split, 1528637909, {});
  finish(checks[0], split, found(kRfc8463Ed25519Record));
  finish(checks[1], split, found(kRfc8463RsaRecord));
  EXPECT_EQ(checks[0].result, Result::Fail);
  EXPECT_EQ(checks[1].result, Result::Fail);
  EXPECT_EQ(checks[0].reason, "signature did not verify");
}

// The RFC 8032 7.1 test key 1 that RFC 8463 A.1 uses, signing with our
// signer: the ed25519 signature is deterministic, so it must verify
// against A.2's published record.
TEST(DkimRfc8463, OurSignerWithTheRfcKeyVerifiesAgainstThePublishedRecord) {
  const std::string seed = *smtp::base64_decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=");
  const std::string pkcs8 = std::string("\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20", 16) + seed;
  std::string b64 = smtp::base64_encode(pkcs8);
  const TestKey key{"-----BEGIN PRIVATE KEY-----\n" + b64 + "\n-----END PRIVATE KEY-----\n", kRfc8463Ed25519Record};
  const std::string unsigned_part = kRfc8463Message.substr(kRfc8463Message.find("From: Joe"));
  SignRequest r;
  r.selector = "brisbane";
  const std::string m = signed_message(unsigned_part, key, r);
  auto out = verify(m, found(kRfc8463Ed25519Record));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].result, Result::Pass) << out[0].reason;
}

// ------------------------------------------------------ round trips

struct Combo {
  KeyType type;
  Canon header, body;
};

class DkimRoundTrip : public ::testing::TestWithParam<Combo> {};

TEST_P(DkimRoundTrip, SignedMessagesPassAndTamperedOnesFail) {
  const Combo c = GetParam();
  const TestKey& key = c.type == KeyType::Ed25519 ? ed_key() : rsa_key();
  SignRequest r;
  r.header_canon = c.header;
  r.body_canon = c.body;
  const std::string m = signed_message(kMessage, key, r);
  auto out = verify(m, found(key.record));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].result, Result::Pass) << out[0].reason;

  auto body = verify(replaced(m, "We lost", "We won"), found(key.record));
  EXPECT_EQ(body[0].result, Result::Fail);
  EXPECT_EQ(body[0].reason, "body hash did not verify");

  auto header = verify(replaced(m, "Suzie Q", "Suzy Q"), found(key.record));
  EXPECT_EQ(header[0].result, Result::Fail);
  EXPECT_EQ(header[0].reason, "signature did not verify");

  // From is over-signed: a second From added on top breaks the signature.
  const std::size_t top = m.find("From:");
  auto extra_from = verify(m.substr(0, top) + "From: mallory@evil.example\r\n" + m.substr(top), found(key.record));
  EXPECT_EQ(extra_from[0].result, Result::Fail);

  // An unsigned header field added changes nothing.
  const std::size_t to = m.find("To:");
  auto added = verify(m.substr(0, to) + "X-Spam: no\r\n" + m.substr(to), found(key.record));
  EXPECT_EQ(added[0].result, Result::Pass) << added[0].reason;
}

TEST_P(DkimRoundTrip, RelaxedSurvivesWhitespaceChangesSimpleDoesNot) {
  const Combo c = GetParam();
  const TestKey& key = c.type == KeyType::Ed25519 ? ed_key() : rsa_key();
  SignRequest r;
  r.header_canon = c.header;
  r.body_canon = c.body;
  const std::string m = signed_message(kMessage, key, r);
  auto header = verify(replaced(m, "Subject: Is dinner   ready?", "subject:Is dinner ready?  "), found(key.record));
  EXPECT_EQ(header[0].result, c.header == Canon::Relaxed ? Result::Pass : Result::Fail) << header[0].reason;
  auto body = verify(replaced(m, "hungry yet?  \r\n", "hungry \t yet?\r\n"), found(key.record));
  EXPECT_EQ(body[0].result, c.body == Canon::Relaxed ? Result::Pass : Result::Fail) << body[0].reason;
}

std::string combo_name(const ::testing::TestParamInfo<Combo>& info) {
  auto canon = [](Canon c) { return c == Canon::Simple ? std::string("Simple") : std::string("Relaxed"); };
  return std::string(info.param.type == KeyType::Rsa ? "Rsa" : "Ed25519") + canon(info.param.header) +
         canon(info.param.body);
}

INSTANTIATE_TEST_SUITE_P(AlgorithmsAndCanonicalizations, DkimRoundTrip,
                         ::testing::Values(Combo{KeyType::Rsa, Canon::Simple, Canon::Simple},
                                           Combo{KeyType::Rsa, Canon::Relaxed, Canon::Relaxed},
                                           Combo{KeyType::Rsa, Canon::Simple, Canon::Relaxed},
                                           Combo{KeyType::Ed25519, Canon::Relaxed, Canon::Simple},
                                           Combo{KeyType::Ed25519, Canon::Simple, Canon::Simple},
                                           Combo{KeyType::Ed25519, Canon::Relaxed, Canon::Relaxed}),
                         combo_name);

// ------------------------------------------------------ every verdict

// A signature over earlier signatures, DKIM-Signature over-signed: the
// one being verified is never among its own h= fields (RFC 6376 5.4).
TEST(DkimVerify, ASignatureNeverCoversItself) {
  const std::string first = signed_message(kMessage, rsa_key());
  SignRequest r;
  r.headers = {"from", "dkim-signature", "dkim-signature"};
  r.timestamp = 1690000001;
  const std::string m = signed_message(first, ed_key(), r);
  const SplitMessage split = split_message(m);
  auto checks = find_signatures(split, 1700000000, {});
  ASSERT_EQ(checks.size(), 2u);
  finish(checks[0], split, found(ed_key().record));
  finish(checks[1], split, found(rsa_key().record));
  EXPECT_EQ(checks[0].result, Result::Pass) << checks[0].reason;
  EXPECT_EQ(checks[1].result, Result::Pass) << checks[1].reason;
  // The older signature is covered: changing it breaks the newer one.
  const std::string changed_text = replaced(m, "t=1690000000;", "t=1690000009;");  // the older one's t=
  const SplitMessage changed = split_message(changed_text);
  auto again = find_signatures(changed, 1700000000, {});
  finish(again[0], changed, found(ed_key().record));
  EXPECT_EQ(again[0].result, Result::Fail);
}

TEST(DkimVerify, BodyLengthCoversTheSignedPartOnly) {
  SignRequest r;
  r.body_length = true;
  const std::string m = signed_message(kMessage, rsa_key(), r);
  EXPECT_NE(m.find("l="), std::string::npos);
  auto appended = verify(m + "Appended by a mailing list\r\n", found(rsa_key().record));
  EXPECT_EQ(appended[0].result, Result::Pass) << appended[0].reason;
  auto changed = verify(replaced(m, "Joe.\r\n", "Bob.\r\n"), found(rsa_key().record));
  EXPECT_EQ(changed[0].result, Result::Fail);
  // l= longer than what is left of the body.
  auto cut = verify(replaced(m, "Joe.\r\n", ""), found(rsa_key().record));
  EXPECT_EQ(cut[0].result, Result::Fail);
  EXPECT_EQ(cut[0].reason, "l= is longer than the body");
}

TEST(DkimVerify, AnExpiredSignatureIsPermerrorBeforeAnyLookup) {
  SignRequest r;
  r.timestamp = 1000;
  r.expires = 2000;
  const std::string m = signed_message(kMessage, ed_key(), r);
  const SplitMessage split = split_message(m);
  auto checks = find_signatures(split, 2001, {});
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].result, Result::PermError);
  EXPECT_EQ(checks[0].reason, "signature expired (x=)");
  EXPECT_TRUE(checks[0].key_name.empty());
  EXPECT_EQ(verify(m, found(ed_key().record), 2000)[0].result, Result::Pass);
}

TEST(DkimVerify, MissingRevokedAndUnreachableKeys) {
  const std::string m = signed_message(kMessage, rsa_key());
  auto missing = verify(m, KeyAnswer{.status = KeyAnswer::Status::Missing, .records = {}, .error = ""});
  EXPECT_EQ(missing[0].result, Result::PermError);
  EXPECT_EQ(missing[0].reason, "no key for signature (sel._domainkey.football.example.com)");
  auto timeout = verify(m, KeyAnswer{.status = KeyAnswer::Status::TempFail, .records = {}, .error = "TIMEOUT"});
  EXPECT_EQ(timeout[0].result, Result::TempError);
  auto revoked = verify(m, found("v=DKIM1; k=rsa; p="));
  EXPECT_EQ(revoked[0].result, Result::PermError);
  EXPECT_EQ(revoked[0].reason, "key revoked");
  auto garbage = verify(m, found("p=bm90IGEga2V5"));
  EXPECT_EQ(garbage[0].result, Result::PermError);
  EXPECT_EQ(garbage[0].reason, "p= is not a usable key");
}

TEST(DkimVerify, KeyRecordTagsAreEnforced) {
  const std::string m = signed_message(kMessage, rsa_key());
  const std::string p = rsa_key().record.substr(rsa_key().record.find("p="));
  EXPECT_EQ(verify(m, found("v=DKIM1; h=sha1; " + p))[0].result, Result::PermError);
  EXPECT_EQ(verify(m, found("v=DKIM1; h=sha1:sha256; " + p))[0].result, Result::Pass);
  EXPECT_EQ(verify(m, found("v=DKIM1; k=ed25519; " + p))[0].result, Result::PermError);
  EXPECT_EQ(verify(m, found("v=DKIM1; s=other; " + p))[0].result, Result::PermError);
  EXPECT_EQ(verify(m, found("v=DKIM1; s=email; " + p))[0].result, Result::Pass);
  EXPECT_EQ(verify(m, found("v=DKIM2; " + p))[0].result, Result::PermError);
  auto testing = verify(m, found("v=DKIM1; t=y; " + p));
  EXPECT_EQ(testing[0].result, Result::Pass);
  EXPECT_TRUE(testing[0].testing);
  // Several TXT records: the first that is a key for this signature counts.
  auto two = verify(m, KeyAnswer{.status = KeyAnswer::Status::Found, .records = {"v=spf1 -all", rsa_key().record}, .error = ""});
  EXPECT_EQ(two[0].result, Result::Pass) << two[0].reason;
}

TEST(DkimVerify, StrictKeysRefuseAnIdentityInASubdomain) {
  const std::string m = signed_message(kMessage, rsa_key());
  const std::string p = rsa_key().record.substr(rsa_key().record.find("p="));
  EXPECT_EQ(verify(m, found("t=s; " + p))[0].result, Result::Pass);  // no i=: the identity is @d
  // i= in a subdomain: re-sign with i= written into the field by hand is
  // not possible without the key, so check the key-record rule directly.
  ParsedSignature sig = parse_signature(
      "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; i=u@mail.example.com; h=from; bh=" +
      smtp::base64_encode(std::string(32, 'x')) + "; b=YWJj");
  ASSERT_TRUE(sig.signature) << sig.error;
  EXPECT_EQ(parse_key_record("t=s; " + p, *sig.signature).error, "the key is strict (t=s) and i= is a subdomain of d=");
  EXPECT_TRUE(parse_key_record("t=y; " + p, *sig.signature).key);
}

TEST(DkimVerify, SignatureFieldRulesArePermerrorsAndRsaSha1IsPolicy) {
  const std::string bh = smtp::base64_encode(std::string(32, 'x'));
  auto parse = [&](const std::string& tags) { return parse_signature("DKIM-Signature: " + tags); };
  const std::string ok = "v=1; a=rsa-sha256; d=example.com; s=s; h=from:to; bh=" + bh + "; b=YWJj";
  EXPECT_TRUE(parse(ok).signature) << parse(ok).error;
  EXPECT_EQ(parse("v=1; a=rsa-sha256; d=example.com; s=s; h=to; bh=" + bh + "; b=YWJj").error, "From field not signed");
  EXPECT_EQ(parse("v=2; a=rsa-sha256; d=example.com; s=s; h=from; bh=" + bh + "; b=YWJj").error, "unsupported version v=2");
  EXPECT_EQ(parse("v=1; a=rsa-sha256; s=s; h=from; bh=" + bh + "; b=YWJj").error, "missing required tag d=");
  EXPECT_EQ(parse("v=1; a=rsa-md5; d=example.com; s=s; h=from; bh=" + bh + "; b=YWJj").error,
            "unsupported algorithm a=rsa-md5");
  EXPECT_EQ(parse(ok + "; i=joe@example.org").error, "i= is not in d= (domain mismatch)");
  EXPECT_TRUE(parse(ok + "; i=joe@sub.example.com").signature);
  EXPECT_EQ(parse(ok + "; c=fancy").error, "unknown canonicalization c=fancy");
  EXPECT_EQ(parse(ok + "; q=http").error, "unsupported query method q=http");
  EXPECT_EQ(parse(ok + "; t=20; x=10").error, "x= is before t=");
  EXPECT_EQ(parse(ok + "; l=ten").error, "l= is not a number");
  EXPECT_EQ(parse("v=1; a=rsa-sha256; d=exa mple.com; s=s; h=from; bh=" + bh + "; b=YWJj").error, "d= is not a domain name");
  ParsedSignature sha1 = parse("v=1; a=rsa-sha1; d=example.com; s=s; h=from; bh=" + bh + "; b=YWJj");
  EXPECT_TRUE(sha1.unacceptable);
  const std::string m = "DKIM-Signature: v=1; a=rsa-sha1; d=example.com; s=s; h=from; bh=" + bh + "; b=YWJj\r\n" + kMessage;
  auto out = verify(m, found(rsa_key().record));
  EXPECT_EQ(out[0].result, Result::Policy);
  EXPECT_EQ(out[0].reason, "rsa-sha1 is not acceptable (RFC 8301 3.1)");
  // Unknown tags are ignored (RFC 6376 3.2).
  EXPECT_TRUE(parse(ok + "; zz=whatever").signature);
}

TEST(DkimVerify, RsaKeysShorterThan1024BitsArePolicy) {
  const TestKey weak = make_key(KeyType::Rsa, 768);
  std::string error;
  EXPECT_FALSE(PrivateKey::from_pem(weak.pem, error));  // we never sign with one
  // A signature made with it anyway (by hand) is refused on the key's size.
  const std::string m = signed_message(kMessage, rsa_key());
  auto out = verify(m, found(weak.record));
  EXPECT_EQ(out[0].result, Result::Policy);
}

TEST(DkimVerify, SignaturesPastTheLimitGetPolicy) {
  std::string m = kMessage;
  for (int i = 0; i < 3; ++i) m = signed_message(m, ed_key());
  auto out = verify(m, found(ed_key().record), 1700000000, 2);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].result, Result::Pass) << out[0].reason;
  EXPECT_EQ(out[1].result, Result::Pass) << out[1].reason;
  EXPECT_EQ(out[2].result, Result::Policy);
  EXPECT_EQ(out[2].reason, "not verified: past --dkim-max-signatures 2");
}

TEST(DkimSign, RefusesHeaderListsWithoutFromAndBadNames) {
  std::string error;
  auto key = PrivateKey::from_pem(rsa_key().pem, error);
  ASSERT_TRUE(key);
  SignRequest r{.domain = "example.com", .selector = "s", .headers = {"to", "subject"}};
  EXPECT_FALSE(sign_message(kMessage, r, *key, error));
  EXPECT_EQ(error, "headers must include From (RFC 6376 5.4)");
  r.headers = {"from", "bad:name"};
  EXPECT_FALSE(sign_message(kMessage, r, *key, error));
  r.headers = {};
  r.domain = "bad domain";
  EXPECT_FALSE(sign_message(kMessage, r, *key, error));
  EXPECT_FALSE(PrivateKey::from_pem("not a key", error));
}

TEST(DkimSign, DefaultHeadersAreThePresentRecommendedOnesWithFromOverSigned) {
  const std::string m = signed_message(kMessage, rsa_key());
  EXPECT_NE(m.find("h=from:subject:date:to:message-id:from;"), std::string::npos) << m.substr(0, 400);
  // Every line of the field stays within RFC 5322's 78 octets.
  const std::string field = m.substr(0, m.find("\r\nReceived:") + 2);
  std::size_t start = 0;
  while (start < field.size()) {
    const std::size_t eol = field.find("\r\n", start);
    EXPECT_LE(eol - start, 78u) << field.substr(start, eol - start);
    start = eol + 2;
  }
}

}  // namespace
}  // namespace mailhook::policyd::dkim

// ------------------------------------------------ the Lua module, in process

namespace mailhook::policyd {
namespace {

using testing::RuntimeTest;

// dkim.verify waits for its key through the worker's resolver (a FakeDns
// table here, answering later on the loop like --test does) and resumes;
// dkim.sign records a DKIM-Signature insert; both refuse files outside
// the grants; dkim.sign outside hook.dot/forward is a script error.
TEST_F(RuntimeTest, DkimModuleVerifiesThroughTheResolverAndSignsThroughMessageChanges) {
  const dkim::TestKey& key = dkim::ed_key();
  const std::filesystem::path keys = dir_ / "keys";
  std::filesystem::create_directories(keys);
  std::ofstream(keys / "ed.pem") << key.pem;
  config_.lua_read_dirs = {keys};
  config_.fake_dns = std::make_shared<dns::FakeDns>();
  std::string error;
  ASSERT_TRUE(config_.fake_dns->add("sel._domainkey.football.example.com TXT " + key.record, error)) << error;
  ASSERT_TRUE(config_.fake_dns->add("gone._domainkey.football.example.com NXDOMAIN", error)) << error;
  load("KEY = '" + (keys / "ed.pem").string() + "'\n" + R"lua(
    function hook.noop()
      local ok, err = pcall(dkim.sign, "x", {domain = "example.com", selector = "s", key = KEY})
      return "250 " .. tostring(ok) .. " " .. tostring(err):match("not available in hook%.%a+") .. "\r\n"
    end
    function hook.dot(path)
      local parts = {}
      for _, r in ipairs(dkim.verify(path)) do
        parts[#parts + 1] = r.selector .. "=" .. r.result .. (r.reason and ("(" .. r.reason .. ")") or "")
      end
      local none, err = dkim.verify("/etc/passwd")
      local bad, berr = dkim.sign(path, {domain = "example.com", selector = "s", key = "/etc/passwd"})
      local ok, serr = dkim.sign(path, {domain = "example.com", selector = "s", key = KEY, algorithm = "ed25519-sha256"})
      local wrong, werr = dkim.sign(path, {domain = "example.com", selector = "s", key = KEY})
      return "550 5.7.1 " .. table.concat(parts, " ") .. " | " .. tostring(none) .. " " .. err .. " | " ..
             tostring(bad) .. " " .. berr .. " | " .. tostring(ok) .. " " .. tostring(serr) .. " | " .. werr .. "\r\n"
    end
  )lua");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Noop)), "250 false not available in hook.noop");
  dkim::SignRequest gone;
  gone.selector = "gone";
  const std::string message = dkim::signed_message(dkim::signed_message(dkim::kMessage, key), key, gone);
  c.transaction = "T1";
  c.notify(EventKind::MessageChunk, message);
  const Decision d = c.send(EventKind::EndOfMessage);
  EXPECT_EQ(text(d),
            "550 5.7.1 gone=permerror(no key for signature (gone._domainkey.football.example.com)) sel=pass | "
            "nil /etc/passwd: not readable by scripts (no --lua-read-dir or --lua-write-dir grants it) | "
            "nil /etc/passwd: not readable by scripts (no --lua-read-dir or --lua-write-dir grants it) | true nil | " +
                (keys / "ed.pem").string() + ": the key is not an RSA key (algorithm=rsa-sha256)");
  ASSERT_EQ(d.changes.size(), 1u);
  EXPECT_EQ(d.changes[0].kind, MessageChange::Kind::InsertHeader);
  EXPECT_EQ(d.changes[0].name, "DKIM-Signature");
  EXPECT_EQ(d.changes[0].index, 0u);
  // The inserted field verifies on the message it was made for.
  const std::string signed_again = "DKIM-Signature: " + d.changes[0].value + "\r\n" + message;
  const dkim::SplitMessage split = dkim::split_message(signed_again);
  auto checks = dkim::find_signatures(split, 1700000000, {});
  ASSERT_EQ(checks.size(), 3u);
  EXPECT_EQ(checks[0].key_name, "s._domainkey.example.com");
  dkim::finish(checks[0], split, dkim::found(key.record));
  EXPECT_EQ(checks[0].result, dkim::Result::Pass) << checks[0].reason;
}

}  // namespace
}  // namespace mailhook::policyd
