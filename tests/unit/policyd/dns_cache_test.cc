// policyd/dns/cache: TTLs (positive, negative from the SOA, never for
// failures), ageing, the entry limit at its edge, and case-insensitive names.
#include "policyd/dns/cache.h"

#include <gtest/gtest.h>

namespace mailhook::policyd::dns {
namespace {

using std::chrono::seconds;

Answer a_record(std::uint32_t ttl) {
  Answer a;
  a.rcode = kNoError;
  Record rr;
  rr.owner = "mx.example.test";
  rr.type = kA;
  rr.ttl = ttl;
  rr.address = "192.0.2.1";
  a.message.answer.push_back(rr);
  return a;
}

Answer nxdomain(std::uint32_t soa_ttl, std::uint32_t minimum) {
  Answer a;
  a.rcode = kNxDomain;
  Record soa;
  soa.type = kSOA;
  soa.ttl = soa_ttl;
  soa.minimum = minimum;
  a.message.authority.push_back(soa);
  return a;
}

TEST(DnsCache, KeepsForTheTtlAndAgesIt) {
  AnswerCache c(10);
  const auto t0 = AnswerCache::Clock::now();
  c.put("MX.Example.Test.", kIN, kA, a_record(60), t0);
  auto hit = c.get("mx.example.test", kIN, kA, t0 + seconds(20));
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->message.answer[0].ttl, 40u);
  EXPECT_FALSE(c.get("mx.example.test", kIN, kAAAA, t0));  // another type
  EXPECT_FALSE(c.get("mx.example.test", kIN, kA, t0 + seconds(60)));  // expired
  EXPECT_EQ(c.size(), 0u);
}

TEST(DnsCache, NegativeAnswersUseTheSoaAndFailuresAreNeverKept) {
  EXPECT_EQ(AnswerCache::ttl_of(nxdomain(600, 300)), seconds(300));
  EXPECT_EQ(AnswerCache::ttl_of(nxdomain(100, 300)), seconds(100));
  EXPECT_EQ(AnswerCache::ttl_of(a_record(86400)), seconds(3600));  // at most an hour
  Answer servfail;
  servfail.rcode = kServFail;
  EXPECT_EQ(AnswerCache::ttl_of(servfail), seconds(0));
  Answer timeout;
  timeout.rcode = kTimeout;
  EXPECT_EQ(AnswerCache::ttl_of(timeout), seconds(0));
  EXPECT_EQ(AnswerCache::ttl_of(a_record(0)), seconds(0));
}

TEST(DnsCache, TheEntryLimitEvictsTheLeastRecentlyUsed) {
  AnswerCache c(2);
  const auto t = AnswerCache::Clock::now();
  c.put("a", kIN, kA, a_record(60), t);
  c.put("b", kIN, kA, a_record(60), t);
  ASSERT_TRUE(c.get("a", kIN, kA, t));  // a is now the most recent
  c.put("c", kIN, kA, a_record(60), t);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_TRUE(c.get("a", kIN, kA, t));
  EXPECT_FALSE(c.get("b", kIN, kA, t));
  EXPECT_TRUE(c.get("c", kIN, kA, t));
  AnswerCache off(0);
  off.put("a", kIN, kA, a_record(60), t);
  EXPECT_FALSE(off.get("a", kIN, kA, t));
}

}  // namespace
}  // namespace mailhook::policyd::dns
