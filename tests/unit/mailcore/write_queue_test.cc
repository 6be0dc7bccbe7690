#include "mailcore/util/write_queue.h"

#include <gtest/gtest.h>

#include <string>

namespace mailhook {
namespace {

TEST(WriteQueue, OneWriteInFlightTheRestInOrder) {
  WriteQueue<std::string> q;
  EXPECT_FALSE(q.writing());
  std::string* first = q.offer("a");
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(*first, "a");
  EXPECT_TRUE(q.writing());
  EXPECT_EQ(q.offer("b"), nullptr);  // waits behind "a"
  EXPECT_EQ(q.offer("c"), nullptr);
  EXPECT_EQ(*first, "a");  // the message in flight stays where gRPC points

  std::string* next = q.done();
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(*next, "b");
  next = q.done();
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(*next, "c");
  EXPECT_EQ(q.done(), nullptr);
  EXPECT_FALSE(q.writing());
  ASSERT_NE(q.offer("d"), nullptr);  // idle again: starts at once
}

TEST(WriteQueue, DropForgetsWhatWaited) {
  WriteQueue<std::string> q;
  q.offer("a");
  q.offer("b");
  q.drop();
  EXPECT_FALSE(q.writing());
  EXPECT_EQ(q.done(), nullptr);  // "b" never goes out
}

}  // namespace
}  // namespace mailhook
