// DATA decoder: dot-unstuffing, the end of data, smuggling variants and
// every split point of the input.
#include "mailcore/smtp/dot_decoder.h"

#include <gtest/gtest.h>

using mailhook::smtp::DotDecoder;
using Fault = DotDecoder::Fault;

namespace {

struct Result {
  std::string message;
  Fault fault;
  bool done;
  std::size_t consumed;
};

Result decode_split(std::string_view in, std::size_t split, std::uint64_t max = 0) {
  DotDecoder d(max);
  Result r{"", Fault::None, false, 0};
  r.consumed = d.feed(in.substr(0, split), r.message);
  if (!d.done()) r.consumed += d.feed(in.substr(split), r.message);
  r.fault = d.fault();
  r.done = d.done();
  return r;
}

// The same result for every way of cutting the input in two.
Result decode(std::string_view in, std::uint64_t max = 0) {
  Result first = decode_split(in, 0, max);
  for (std::size_t split = 1; split <= in.size(); ++split) {
    Result r = decode_split(in, split, max);
    EXPECT_EQ(r.message, first.message) << "split " << split;
    EXPECT_EQ(r.fault, first.fault) << "split " << split;
    EXPECT_EQ(r.done, first.done) << "split " << split;
    EXPECT_EQ(r.consumed, first.consumed) << "split " << split;
  }
  return first;
}

}  // namespace

TEST(DotDecoder, UnstuffsLeadingDotsAndKeepsCrlf) {
  Result r = decode("Subject: x\r\n\r\n..hidden\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.fault, Fault::None);
  EXPECT_EQ(r.message, "Subject: x\r\n\r\n.hidden\r\n");
}

TEST(DotDecoder, AnEmptyMessageEndsAtOnce) {
  Result r = decode(".\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.message, "");
}

TEST(DotDecoder, StopsAtTheEndAndLeavesPipelinedCommands) {
  const std::string in = "a\r\n.\r\nQUIT\r\n";
  Result r = decode(in);
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.consumed, in.size() - 6);
}

TEST(DotDecoder, BareLfDotLfDoesNotEndDataAndIsRefused) {
  Result r = decode("a\n.\nMAIL FROM:<x@y>\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.fault, Fault::BareLineEnd);
}

TEST(DotDecoder, BareLfDotCrlfDoesNotEndData) {
  Result r = decode("a\n.\r\nRCPT TO:<x@y>\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.fault, Fault::BareLineEnd);
  EXPECT_EQ(r.consumed, std::string("a\n.\r\nRCPT TO:<x@y>\r\n.\r\n").size());
}

TEST(DotDecoder, BareCrDotCrDoesNotEndData) {
  Result r = decode("a\r.\rDATA\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.fault, Fault::BareLineEnd);
}

TEST(DotDecoder, CrlfDotLfDoesNotEndData) {
  Result r = decode("a\r\n.\nb\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.fault, Fault::BareLineEnd);
}

TEST(DotDecoder, NulIsAFault) {
  Result r = decode(std::string_view("a\0b\r\n.\r\n", 8));
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.fault, Fault::NulByte);
}

TEST(DotDecoder, SizeLimitIsEnforcedAtItsEdge) {
  EXPECT_EQ(decode("1234\r\n.\r\n", 6).fault, Fault::None);   // exactly 6 octets
  Result r = decode("12345\r\n.\r\n", 6);                      // 7 octets
  EXPECT_EQ(r.fault, Fault::TooBig);
  EXPECT_TRUE(r.done);
}

TEST(DotDecoder, NotDoneWithoutTheTerminator) {
  Result r = decode("a\r\nb\r\n");
  EXPECT_FALSE(r.done);
  EXPECT_EQ(r.message, "a\r\nb\r\n");
}
