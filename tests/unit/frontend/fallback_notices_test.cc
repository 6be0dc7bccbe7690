// FallbackNotices: what the front says as it falls back to one call per
// session and back, on a clock the test moves (the 10-minute summary of
// mixed replicas cannot be waited for in an integration test).
#include "frontend/policy_client/fallback_notices.h"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using mailhook::front::FallbackNotices;
using Say = FallbackNotices::Say;

namespace {

constexpr auto kAge = 10s;  // --policy-stream-age
constexpr auto kHeal = kAge * FallbackNotices::kHealAges;

TEST(FallbackNotices, NothingIsSaidWhileSharedStreamsServe) {
  FallbackNotices n(kAge);
  const auto t = FallbackNotices::Clock::time_point{} + 1h;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(n.served(t + i * 1min).say, Say::Nothing);
}

TEST(FallbackNotices, AnOlderPolicydIsSaidOnceAndItsUpgradeOnce) {
  FallbackNotices n(kAge);
  auto t = FallbackNotices::Clock::time_point{} + 1h;
  EXPECT_EQ(n.fell_back(t).say, Say::OlderPolicyd);
  for (int i = 1; i < 20; ++i) EXPECT_EQ(n.fell_back(t + i * kAge).say, Say::Nothing);  // failed re-probes
  t += 20 * kAge;
  EXPECT_EQ(n.served(t).say, Say::ServeAgain);
  EXPECT_EQ(n.served(t + 1s).say, Say::Nothing);
  EXPECT_EQ(n.served(t + kHeal).say, Say::Nothing);  // healed: plain serving, silently
  // A fallback long after: an older replica again, said as such.
  EXPECT_EQ(n.fell_back(t + 1h).say, Say::OlderPolicyd);
}

TEST(FallbackNotices, MixedReplicasAreSaidOnceThenSummarisedThenHealed) {
  FallbackNotices n(kAge, 10min);
  auto t = FallbackNotices::Clock::time_point{} + 1h;
  EXPECT_EQ(n.fell_back(t).say, Say::OlderPolicyd);
  t += kAge;
  EXPECT_EQ(n.served(t).say, Say::ServeAgain);
  t += 1s;
  const FallbackNotices::Note differ = n.fell_back(t);
  EXPECT_EQ(differ.say, Say::ReplicasDiffer);
  // Every stream age for 9 minutes: serve, flip; sessions racing to the
  // broken stream count once.
  std::uint64_t flips = 0;
  for (int i = 0; i < 54; ++i) {
    t += kAge;
    EXPECT_EQ(n.served(t).say, Say::Nothing);
    EXPECT_EQ(n.served(t + 1s).say, Say::Nothing);
    const FallbackNotices::Note f = n.fell_back(t + 2s);
    EXPECT_EQ(f.say, Say::Flip);
    EXPECT_EQ(f.flips, ++flips + 1);
    EXPECT_EQ(n.fell_back(t + 2s).say, Say::Nothing);
  }
  // Past 10 minutes since the warning: one summary with the flips since.
  t += 2min;
  EXPECT_EQ(n.served(t).say, Say::Nothing);
  const FallbackNotices::Note summary = n.fell_back(t + 1s);
  EXPECT_EQ(summary.say, Say::StillDiffer);
  EXPECT_EQ(summary.flips, 55u);
  t += kAge;
  EXPECT_EQ(n.served(t).say, Say::Nothing);
  EXPECT_EQ(n.fell_back(t + 1s).say, Say::Flip);  // the next summary is 10 minutes away
  // The upgrade completes: kHealAges stream ages serve with no fallback.
  t += kAge;
  EXPECT_EQ(n.served(t).say, Say::Nothing);
  EXPECT_EQ(n.served(t + kHeal - 1s).say, Say::Nothing);
  const FallbackNotices::Note healed = n.served(t + kHeal);
  EXPECT_EQ(healed.say, Say::AllServe);
  EXPECT_EQ(healed.flips, 57u);
  EXPECT_EQ(n.served(t + 2 * kHeal).say, Say::Nothing);
}

TEST(FallbackNotices, AFallbackBeforeTheHealKeepsTheReplicasDiffering) {
  FallbackNotices n(kAge);
  auto t = FallbackNotices::Clock::time_point{} + 1h;
  n.fell_back(t);
  n.served(t += kAge);
  EXPECT_EQ(n.fell_back(t += 1s).say, Say::ReplicasDiffer);
  EXPECT_EQ(n.served(t += kAge).say, Say::Nothing);
  EXPECT_EQ(n.served(t + kHeal - 1s).say, Say::Nothing);
  EXPECT_EQ(n.fell_back(t + kHeal - 1s).say, Say::Flip);  // just short of the heal
  t += kHeal;
  EXPECT_EQ(n.served(t).say, Say::Nothing);  // serving starts anew here
  EXPECT_EQ(n.served(t + kHeal - 1s).say, Say::Nothing);
  EXPECT_EQ(n.served(t + kHeal).say, Say::AllServe);
}

}  // namespace
