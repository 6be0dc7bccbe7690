// Session ids (issue 19 finding 6): seconds + a 16-bit counter collided
// across fronts sharing a spool and across restarts in the same second.
#include "mailcore/telemetry/session_id.h"

#include <gtest/gtest.h>

#include <set>

using mailhook::telemetry::SessionIdSource;

TEST(SessionId, FixedWidthCrockfordBase32) {
  EXPECT_EQ(SessionIdSource::format(0, 0, 0), "000000000000000000000");
  const std::string id = SessionIdSource::format(1795532622123, 0x123456789A, 7);
  EXPECT_EQ(id.size(), 21u);
  EXPECT_EQ(id.find_first_not_of("0123456789ABCDEFGHJKMNPQRSTVWXYZ"), std::string::npos) << id;
}

TEST(SessionId, SortsByTime) {
  EXPECT_LT(SessionIdSource::format(1795532622123, 0xFFFFFFFFFF, 0xFFFFF),
            SessionIdSource::format(1795532622124, 0, 0));
  EXPECT_LT(SessionIdSource::format(1795532622123, 5, 1), SessionIdSource::format(1795532622123, 5, 2));
}

TEST(SessionId, TwoProcessesInTheSameMillisecondDiffer) {
  // Same time, same counter (two fronts just started): the node tells them apart.
  EXPECT_NE(SessionIdSource::format(1795532622123, 1, 0), SessionIdSource::format(1795532622123, 2, 0));
  SessionIdSource a, b;  // random nodes
  EXPECT_NE(a.next().substr(9, 8), b.next().substr(9, 8));
}

TEST(SessionId, OneProcessNeverRepeatsPast65536PerSecond) {
  SessionIdSource s(42);
  std::set<std::string> seen;
  for (int i = 0; i < 200000; ++i) ASSERT_TRUE(seen.insert(s.next()).second) << i;
}
