// Log lines and client values (issue 19 finding 7: no client byte reaches
// a log line as a line break or control character).
#include "mailcore/telemetry/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

using namespace mailhook;

TEST(LogEscape, ClientValuesStayOneToken) {
  EXPECT_EQ(log::escape("bob\nmailhook: authenticated user=root"),
            "bob\\x0Amailhook:\\x20authenticated\\x20user=root");
  EXPECT_EQ(log::escape("a\rb\x1b[2J"), "a\\x0Db\\x1B[2J");
  EXPECT_EQ(log::escape("quote\" back\\slash"), "quote\\x22\\x20back\\x5Cslash");
  EXPECT_EQ(log::escape("caf\xc3\xa9"), "caf\\xC3\\xA9");
  EXPECT_EQ(log::escape("plain.example"), "plain.example");
  EXPECT_EQ(fmt::format("user={}", log::escaped("a\nb")), "user=a\\x0Ab");
}

TEST(LogEscape, WriteKeepsOneCallOnOneLine) {
  char path[] = "/tmp/mailhook-log-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  log::init("test", true);
  log::info("raw {} value", std::string("a\nfake line\r\0z", 14));
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::remove(path);
  const std::string text = ss.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_NE(text.find("raw a\\x0Afake line\\x0D\\x00z value"), std::string::npos) << text;
}
