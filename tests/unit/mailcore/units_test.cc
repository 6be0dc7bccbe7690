// mailcore/config/units: durations and sizes with units, bare numbers in
// the flag's old unit, and everything else refused (never guessed).
#include "mailcore/config/units.h"

#include <gtest/gtest.h>

namespace mc = mailhook::config;
using std::chrono::milliseconds;

namespace {

std::optional<milliseconds> dur(const char* t, milliseconds bare = milliseconds(1000)) {
  std::string e;
  return mc::parse_duration(t, bare, e);
}

std::optional<std::uint64_t> size(const char* t, std::uint64_t bare = 1) {
  std::string e;
  return mc::parse_size(t, bare, e);
}

}  // namespace

TEST(Units, DurationSuffixes) {
  EXPECT_EQ(dur("500ms"), milliseconds(500));
  EXPECT_EQ(dur("30s"), milliseconds(30000));
  EXPECT_EQ(dur("5m"), milliseconds(300000));
  EXPECT_EQ(dur("1h"), milliseconds(3600000));
  EXPECT_EQ(dur("2d"), milliseconds(172800000));
  EXPECT_EQ(dur(" 7s "), milliseconds(7000));
}

TEST(Units, BareDurationKeepsTheOldUnit) {
  EXPECT_EQ(dur("30", milliseconds(1000)), milliseconds(30000));
  EXPECT_EQ(dur("250", milliseconds(1)), milliseconds(250));
  EXPECT_EQ(dur("0"), milliseconds(0));
}

TEST(Units, BadDurationsAreRefusedWithAReason) {
  std::string e;
  EXPECT_FALSE(mc::parse_duration("", milliseconds(1), e));
  EXPECT_FALSE(mc::parse_duration("ten", milliseconds(1), e));
  EXPECT_NE(e.find("not a duration"), std::string::npos);
  EXPECT_FALSE(mc::parse_duration("5x", milliseconds(1), e));
  EXPECT_NE(e.find("unknown duration unit 'x'"), std::string::npos);
  EXPECT_FALSE(mc::parse_duration("-5s", milliseconds(1), e));
  EXPECT_FALSE(mc::parse_duration("1.5s", milliseconds(1), e));
  EXPECT_FALSE(mc::parse_duration("99999999999999999999h", milliseconds(1), e));
  EXPECT_FALSE(mc::parse_duration("9999999999999999h", milliseconds(1), e));
  EXPECT_NE(e.find("too large"), std::string::npos);
}

TEST(Units, SizeSuffixes) {
  EXPECT_EQ(size("25M"), 26214400u);
  EXPECT_EQ(size("64K"), 65536u);
  EXPECT_EQ(size("64k"), 65536u);
  EXPECT_EQ(size("1G"), 1073741824u);
  EXPECT_EQ(size("1T"), 1099511627776u);
  EXPECT_EQ(size("25MB"), 26214400u);
  EXPECT_EQ(size("25MiB"), 26214400u);
  EXPECT_EQ(size("100B"), 100u);
}

TEST(Units, BareSizeKeepsTheOldUnit) {
  EXPECT_EQ(size("1000"), 1000u);
  EXPECT_EQ(size("256", 1u << 20), 256u << 20);
}

TEST(Units, BadSizesAreRefused) {
  std::string e;
  EXPECT_FALSE(mc::parse_size("M", 1, e));
  EXPECT_FALSE(mc::parse_size("25Q", 1, e));
  EXPECT_NE(e.find("unknown size unit 'Q'"), std::string::npos);
  EXPECT_FALSE(mc::parse_size("25MX", 1, e));
  EXPECT_FALSE(mc::parse_size("99999999999T", 1, e));
  EXPECT_NE(e.find("too large"), std::string::npos);
}

TEST(Units, FormatIsTheShortestExactSpelling) {
  EXPECT_EQ(mc::format_duration(milliseconds(30000)), "30s");
  EXPECT_EQ(mc::format_duration(milliseconds(300000)), "5m");
  EXPECT_EQ(mc::format_duration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(mc::format_size(26214400), "25M");
  EXPECT_EQ(mc::format_size(1000), "1000");
  std::string e;
  for (const char* t : {"1500ms", "30s", "5m", "2h"}) {
    EXPECT_EQ(mc::parse_duration(mc::format_duration(*dur(t)), milliseconds(1), e), dur(t)) << t;
  }
}
