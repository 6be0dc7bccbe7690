#include "mailcore/util/fifo.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace mailhook {
namespace {

TEST(Fifo, GivesElementsBackInTheOrderTheyCame) {
  Fifo<std::string> q;
  EXPECT_TRUE(q.empty());
  q.push_back("a");
  q.push_back("b");
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.front(), "a");
  EXPECT_EQ(q.pop_front(), "a");
  q.push_back("c");  // behind what is left
  EXPECT_EQ(q.pop_front(), "b");
  EXPECT_EQ(q.pop_front(), "c");
  EXPECT_TRUE(q.empty());
  q.push_back("d");  // usable again after draining
  EXPECT_EQ(q.pop_front(), "d");
}

TEST(Fifo, HoldsMoveOnlyElements) {
  Fifo<std::unique_ptr<int>> q;
  q.push_back(std::make_unique<int>(7));
  std::unique_ptr<int> p = q.pop_front();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 7);
}

TEST(Fifo, ReleasesWhatItHeldOnceDrained) {
  auto counted = std::make_shared<int>(0);
  Fifo<std::shared_ptr<int>> q;
  for (int i = 0; i < 100; ++i) q.push_back(counted);
  EXPECT_EQ(counted.use_count(), 101);
  for (int i = 0; i < 99; ++i) q.pop_front();
  EXPECT_EQ(counted.use_count(), 2);  // popped elements are moved out, not kept
  q.pop_front();
  EXPECT_EQ(counted.use_count(), 1);
  q.push_back(counted);
  q.clear();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(counted.use_count(), 1);
}

}  // namespace
}  // namespace mailhook
