// daemon/options: a small options table parsed the way the daemons parse
// theirs: units become the flag's old unit, an alias sets the new option
// and warns, --print-config marks defaults and reads back the same.
#include "daemon/options.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace md = mailhook::daemon;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

struct Settings {
  int timeout_s = 30;
  int wait_ms = 100;
  std::uint64_t size = 1024;
  std::string dir = "/var/spool/x";
  std::vector<std::string> scripts;
  bool flag = false;
};

// Parses `args` into `s` with a fresh table; "" or the error.
std::string parse(std::vector<std::string> args, Settings& s, std::string* printed = nullptr,
                  std::vector<std::string>* warnings = nullptr) {
  CLI::App app{"test", "test"};
  md::Options opts(app, "test");
  app.add_option("--timeout", s.timeout_s, "")->transform(md::duration_in(seconds(1), "seconds"))->capture_default_str();
  app.add_option("--wait", s.wait_ms, "")->transform(md::duration_in(milliseconds(1), "milliseconds"))
      ->capture_default_str();
  app.add_option("--size", s.size, "")->transform(md::size_in(1, "bytes"))->capture_default_str();
  auto* dir = app.add_option("--queue-dir", s.dir, "")->capture_default_str();
  opts.alias("--spool", dir);
  app.add_option("--script", s.scripts, "");
  app.add_flag("--flag", s.flag, "");
  std::vector<std::string> storage = args;
  storage.insert(storage.begin(), "test");
  std::vector<char*> argv;
  for (auto& a : storage) argv.push_back(a.data());
  const std::string e = opts.try_parse(static_cast<int>(argv.size()), argv.data());
  if (printed != nullptr) *printed = opts.print_config();
  if (warnings != nullptr) *warnings = opts.warnings();
  return e;
}

}  // namespace

TEST(Options, UnitsBecomeTheOldUnit) {
  Settings s;
  ASSERT_EQ(parse({"--timeout", "5m", "--wait", "2s", "--size", "64K"}, s), "");
  EXPECT_EQ(s.timeout_s, 300);
  EXPECT_EQ(s.wait_ms, 2000);
  EXPECT_EQ(s.size, 65536u);
  Settings bare;
  ASSERT_EQ(parse({"--timeout", "45", "--wait", "7"}, bare), "");
  EXPECT_EQ(bare.timeout_s, 45);
  EXPECT_EQ(bare.wait_ms, 7);
}

TEST(Options, APartialUnitIsAnError) {
  Settings s;
  EXPECT_NE(parse({"--timeout", "1500ms"}, s).find("not a whole number of seconds"), std::string::npos);
  EXPECT_NE(parse({"--size", "12X"}, s).find("unknown size unit"), std::string::npos);
}

TEST(Options, AliasSetsTheNewOptionAndWarns) {
  Settings s;
  std::vector<std::string> warnings;
  ASSERT_EQ(parse({"--spool", "/tmp/q"}, s, nullptr, &warnings), "");
  EXPECT_EQ(s.dir, "/tmp/q");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("--spool is deprecated"), std::string::npos);
  EXPECT_NE(warnings[0].find("use --queue-dir"), std::string::npos);
  Settings both;
  ASSERT_EQ(parse({"--spool", "/old", "--queue-dir", "/new"}, both), "");
  EXPECT_EQ(both.dir, "/new");
}

TEST(Options, PrintConfigMarksDefaultsAndReadsBack) {
  Settings s;
  std::string printed;
  ASSERT_EQ(parse({"--timeout", "1h", "--script", "a.lua", "--script", "b.lua", "--flag"}, s, &printed), "");
  EXPECT_NE(printed.find("timeout = 3600\n"), std::string::npos) << printed;
  EXPECT_NE(printed.find("wait = 100  # default\n"), std::string::npos) << printed;
  EXPECT_NE(printed.find("queue-dir = \"/var/spool/x\"  # default\n"), std::string::npos) << printed;
  EXPECT_NE(printed.find("script = [\"a.lua\", \"b.lua\"]\n"), std::string::npos) << printed;
  EXPECT_NE(printed.find("flag = true\n"), std::string::npos) << printed;
  EXPECT_EQ(printed.find("spool ="), std::string::npos) << printed;

  const std::string path = ::testing::TempDir() + "/options_test.toml";
  std::ofstream(path) << printed;
  Settings again;
  std::string reprinted;
  ASSERT_EQ(parse({"--config", path}, again, &reprinted), "");
  EXPECT_EQ(again.timeout_s, 3600);
  EXPECT_EQ(again.scripts, (std::vector<std::string>{"a.lua", "b.lua"}));
  EXPECT_TRUE(again.flag);
  // Only the first line (which names the file) differs.
  EXPECT_EQ(printed.substr(printed.find('\n')), reprinted.substr(reprinted.find('\n')));
  std::remove(path.c_str());
}

TEST(Options, TyposGetASuggestion) {
  Settings s;
  EXPECT_EQ(parse({"--timeuot", "3"}, s), "unknown option --timeuot (did you mean --timeout?)");
  EXPECT_EQ(parse({"--qqqqqqqqqq"}, s), "unknown option --qqqqqqqqqq");
  EXPECT_EQ(md::Options::closest("--polcyd", {"--policyd", "--policy-timeout", "--listen"}), "--policyd");
  EXPECT_EQ(md::Options::closest("--x", {"--policyd"}), "");
}
