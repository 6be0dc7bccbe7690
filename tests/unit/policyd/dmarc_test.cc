// policyd/dmarc: the record parser (RFC 7489 6.3/6.4, 6.6.3 steps 3 and 5),
// alignment (3.1), policy selection with sp= and pct= (6.6.3 step 6,
// 6.6.4), and Organizational Domains from the Public Suffix List (3.2).
#include <gtest/gtest.h>

#include "policyd/dmarc/evaluate.h"
#include "policyd/dmarc/org_domain.h"
#include "policyd/dmarc/record.h"

namespace mailhook::policyd::dmarc {
namespace {

TEST(DmarcRecord, ReadsEveryTagWeActOn) {
  const ParsedRecord p = parse_record("v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=s; pct=25; rua=mailto:a@example.com");
  ASSERT_EQ(p.status, RecordStatus::Valid) << p.error;
  EXPECT_EQ(p.record.policy, Policy::Reject);
  ASSERT_TRUE(p.record.subdomain_policy);
  EXPECT_EQ(*p.record.subdomain_policy, Policy::Quarantine);
  EXPECT_EQ(p.record.dkim_alignment, Alignment::Strict);
  EXPECT_EQ(p.record.spf_alignment, Alignment::Strict);
  EXPECT_EQ(p.record.percent, 25);
  EXPECT_FALSE(p.record.policy_defaulted);
}

TEST(DmarcRecord, DefaultsAreRelaxedAndAHundredPercent) {
  const ParsedRecord p = parse_record("v=DMARC1;p=none");
  ASSERT_EQ(p.status, RecordStatus::Valid);
  EXPECT_EQ(p.record.policy, Policy::None);
  EXPECT_FALSE(p.record.subdomain_policy);
  EXPECT_EQ(p.record.dkim_alignment, Alignment::Relaxed);
  EXPECT_EQ(p.record.spf_alignment, Alignment::Relaxed);
  EXPECT_EQ(p.record.percent, 100);
}

TEST(DmarcRecord, WhitespaceTrailingSeparatorAndCaseOfKeywords) {
  const ParsedRecord p = parse_record("v = DMARC1 ;\tP = Quarantine ; ADKIM=S ;");
  ASSERT_EQ(p.status, RecordStatus::Valid) << p.error;
  EXPECT_EQ(p.record.policy, Policy::Quarantine);
  EXPECT_EQ(p.record.dkim_alignment, Alignment::Strict);
}

TEST(DmarcRecord, EmptyTagsBetweenSeparatorsAreSkipped) {
  const ParsedRecord p = parse_record("v=DMARC1;; p=reject;;aspf=s;;");
  ASSERT_EQ(p.status, RecordStatus::Valid) << p.error;
  EXPECT_EQ(p.record.spf_alignment, Alignment::Strict);
}

TEST(DmarcRecord, ManyUnknownTagsAreIgnoredInOnePass) {
  std::string text = "v=DMARC1; p=reject";
  for (int i = 0; i < 20000; ++i) text += "; x=1";  // repeated unknown tags: not an error
  const ParsedRecord p = parse_record(text);
  ASSERT_EQ(p.status, RecordStatus::Valid) << p.error;
  EXPECT_EQ(p.record.policy, Policy::Reject);
}

TEST(DmarcRecord, UnknownTagsAreIgnored) {
  const ParsedRecord p = parse_record("v=DMARC1; p=reject; fo=1; rf=afrf; ri=86400; np=reject; x-new=whatever");
  ASSERT_EQ(p.status, RecordStatus::Valid) << p.error;
  EXPECT_EQ(p.record.policy, Policy::Reject);
}

TEST(DmarcRecord, WithoutVersionFirstIsNotDmarc) {
  // RFC 7489 6.6.3 step 3: discarded, not an error.
  EXPECT_EQ(parse_record("p=reject; v=DMARC1").status, RecordStatus::NotDmarc);
  EXPECT_EQ(parse_record("v=spf1 -all").status, RecordStatus::NotDmarc);
  EXPECT_EQ(parse_record("v=dmarc1; p=reject").status, RecordStatus::NotDmarc);  // DMARC1 is case-sensitive
  EXPECT_EQ(parse_record("v=DMARC2; p=reject").status, RecordStatus::NotDmarc);
  EXPECT_EQ(parse_record("").status, RecordStatus::NotDmarc);
  EXPECT_EQ(parse_record(";;").status, RecordStatus::NotDmarc);
  EXPECT_EQ(parse_record("DMARC1").status, RecordStatus::NotDmarc);
}

TEST(DmarcRecord, MalformedDmarcRecordsArePermanentErrors) {
  EXPECT_EQ(parse_record("v=DMARC1").status, RecordStatus::Invalid);                 // no p
  EXPECT_EQ(parse_record("v=DMARC1; p=bounce").status, RecordStatus::Invalid);       // bad p
  EXPECT_EQ(parse_record("v=DMARC1; p=none; sp=maybe").status, RecordStatus::Invalid);
  EXPECT_EQ(parse_record("v=DMARC1; p=none; pct=101").status, RecordStatus::Invalid);
  EXPECT_EQ(parse_record("v=DMARC1; p=none; pct=-1").status, RecordStatus::Invalid);
  EXPECT_EQ(parse_record("v=DMARC1; p=none; pct=").status, RecordStatus::Invalid);
  EXPECT_EQ(parse_record("v=DMARC1; p=none; adkim=x").status, RecordStatus::Invalid);
  EXPECT_EQ(parse_record("v=DMARC1; p=none; p=reject").status, RecordStatus::Invalid);  // twice
  EXPECT_EQ(parse_record("v=DMARC1; p").status, RecordStatus::Invalid);
  EXPECT_EQ(parse_record("v=DMARC1; p=none; sp=none; SP=reject").status, RecordStatus::Invalid);
}

TEST(DmarcRecord, InvalidPolicyWithAReportAddressIsAppliedAsNone) {
  // RFC 7489 6.6.3 step 5.
  const ParsedRecord p = parse_record("v=DMARC1; p=bogus; sp=reject; rua=mailto:dmarc@example.com");
  ASSERT_EQ(p.status, RecordStatus::Valid);
  EXPECT_EQ(p.record.policy, Policy::None);
  EXPECT_FALSE(p.record.subdomain_policy);
  EXPECT_TRUE(p.record.policy_defaulted);
  EXPECT_EQ(parse_record("v=DMARC1; p=bogus; rua=not a uri").status, RecordStatus::Invalid);
}

Identifier id(std::string result, std::string domain) {
  Identifier i{std::move(result), domain, org_domain(domain)};
  return i;
}

Message message(std::string from, std::vector<Identifier> spf, std::vector<Identifier> dkim) {
  Message m;
  m.from_domain = from;
  m.from_org_domain = org_domain(from);
  m.spf = std::move(spf);
  m.dkim = std::move(dkim);
  return m;
}

Record record(std::string_view text) {
  const ParsedRecord p = parse_record(text);
  EXPECT_EQ(p.status, RecordStatus::Valid) << text;
  return p.record;
}

TEST(DmarcOrgDomain, ComesFromThePublicSuffixList) {
  EXPECT_EQ(org_domain("mail.example.com"), "example.com");
  EXPECT_EQ(org_domain("example.com"), "example.com");
  EXPECT_EQ(org_domain("a.b.example.co.uk"), "example.co.uk");
  EXPECT_EQ(org_domain("Example.CO.UK."), "example.co.uk");
  EXPECT_EQ(org_domain("news.bbc.co.uk"), "bbc.co.uk");
  EXPECT_EQ(org_domain("co.uk"), "co.uk");  // a public suffix is its own
  // The wildcard rule *.kawasaki.jp and its exception !city.kawasaki.jp.
  EXPECT_EQ(org_domain("a.x.y.kawasaki.jp"), "x.y.kawasaki.jp");
  EXPECT_EQ(org_domain("www.city.kawasaki.jp"), "city.kawasaki.jp");
  EXPECT_EQ(org_domain("host.unlisted-tld-example"), "host.unlisted-tld-example");  // the default rule "*"
}

TEST(DmarcAlignment, RelaxedMatchesTheOrganizationalDomain) {
  const Message m = message("news.example.co.uk", {id("pass", "bounce.example.co.uk")}, {});
  EXPECT_TRUE(aligned(m.spf[0], m.from_domain, m.from_org_domain, Alignment::Relaxed));
  EXPECT_FALSE(aligned(m.spf[0], m.from_domain, m.from_org_domain, Alignment::Strict));
}

TEST(DmarcAlignment, SiblingsUnderAPublicSuffixDoNotAlign) {
  // other.co.uk and example.co.uk share only the public suffix co.uk.
  const Message m = message("example.co.uk", {id("pass", "other.co.uk")}, {});
  EXPECT_FALSE(aligned(m.spf[0], m.from_domain, m.from_org_domain, Alignment::Relaxed));
}

TEST(DmarcAlignment, StrictIsExactButCaseInsensitive) {
  Identifier i = id("pass", "Example.COM");
  EXPECT_TRUE(aligned(i, "example.com", "example.com", Alignment::Strict));
}

TEST(DmarcEvaluate, AlignedDkimPassPassesEvenWhenSpfFails) {
  const Verdict v = evaluate(record("v=DMARC1; p=reject"), false,
                             message("example.com", {id("fail", "example.com")}, {id("pass", "mail.example.com")}), 0);
  EXPECT_EQ(v.result, Result::Pass);
  EXPECT_TRUE(v.dkim_aligned);
  EXPECT_FALSE(v.spf_aligned);
  EXPECT_EQ(v.policy, Policy::Reject);
  EXPECT_EQ(v.disposition, Policy::None);
}

TEST(DmarcEvaluate, UnalignedPassesFailAndGetThePolicy) {
  const Verdict v = evaluate(record("v=DMARC1; p=reject"), false,
                             message("example.com", {id("pass", "other.net")}, {id("pass", "other.net")}), 0);
  EXPECT_EQ(v.result, Result::Fail);
  EXPECT_EQ(v.disposition, Policy::Reject);
}

TEST(DmarcEvaluate, StrictAlignmentRefusesASubdomainSignature) {
  const Message m = message("example.com", {id("pass", "bounce.example.com")}, {id("pass", "mail.example.com")});
  EXPECT_EQ(evaluate(record("v=DMARC1; p=quarantine"), false, m, 0).result, Result::Pass);
  const Verdict strict = evaluate(record("v=DMARC1; p=quarantine; adkim=s; aspf=s"), false, m, 0);
  EXPECT_EQ(strict.result, Result::Fail);
  EXPECT_EQ(strict.disposition, Policy::Quarantine);
  // Strict DKIM only: the relaxed SPF alignment still passes.
  EXPECT_EQ(evaluate(record("v=DMARC1; p=quarantine; adkim=s"), false, m, 0).result, Result::Pass);
}

TEST(DmarcEvaluate, OnlyAPassCounts) {
  const Message m = message("example.com", {id("softfail", "example.com")}, {id("temperror", "example.com")});
  EXPECT_EQ(evaluate(record("v=DMARC1; p=reject"), false, m, 0).result, Result::Fail);
}

TEST(DmarcEvaluate, SubdomainPolicyAppliesToARecordFoundAtTheOrgDomain) {
  const Record r = record("v=DMARC1; p=reject; sp=quarantine");
  const Message sub = message("a.example.co.uk", {}, {});
  EXPECT_EQ(evaluate(r, true, sub, 0).policy, Policy::Quarantine);
  // The same record published at the subdomain itself: p= applies.
  EXPECT_EQ(evaluate(r, false, sub, 0).policy, Policy::Reject);
  // The org domain's own mail: p=.
  EXPECT_EQ(evaluate(r, true, message("example.co.uk", {}, {}), 0).policy, Policy::Reject);
  // No sp=: the subdomain gets p=.
  EXPECT_EQ(evaluate(record("v=DMARC1; p=reject"), true, sub, 0).policy, Policy::Reject);
}

TEST(DmarcEvaluate, PercentSamplesAndOutsideGetsTheNextLowerPolicy) {
  const Message m = message("example.com", {}, {});
  const Record r = record("v=DMARC1; p=reject; pct=30");
  EXPECT_EQ(evaluate(r, false, m, 0).disposition, Policy::Reject);
  EXPECT_EQ(evaluate(r, false, m, 29).disposition, Policy::Reject);
  EXPECT_EQ(evaluate(r, false, m, 30).disposition, Policy::Quarantine);  // the edge
  EXPECT_EQ(evaluate(r, false, m, 99).disposition, Policy::Quarantine);
  const Record q = record("v=DMARC1; p=quarantine; pct=0");
  EXPECT_EQ(evaluate(q, false, m, 0).disposition, Policy::None);
  EXPECT_EQ(evaluate(q, false, m, 0).policy, Policy::Quarantine);  // the published policy stays
  EXPECT_EQ(evaluate(record("v=DMARC1; p=reject; pct=100"), false, m, 99).disposition, Policy::Reject);
}

TEST(DmarcEvaluate, WithoutPolicyReportsAlignmentOnly) {
  const Verdict v = without_policy(Result::None, message("example.com", {id("pass", "example.com")}, {}));
  EXPECT_EQ(v.result, Result::None);
  EXPECT_FALSE(v.has_policy);
  EXPECT_TRUE(v.spf_aligned);
  EXPECT_EQ(v.disposition, Policy::None);
}

}  // namespace
}  // namespace mailhook::policyd::dmarc
