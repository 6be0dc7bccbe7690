// AcceptBackoff and RateLimitedLog: what an acceptor does when accept(2)
// keeps failing (THREATS.md, process limits): a growing pause, never a
// busy loop, and at most one log line a second with the rest counted.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <system_error>
#include <thread>

#include "daemon/accept_backoff.h"
#include "daemon/rate_limited_log.h"
#include "mailcore/telemetry/log.h"

namespace mailhook::daemon {
namespace {

using std::chrono::milliseconds;

std::size_t lines(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(AcceptBackoff, PausesDoubleUpToTheCapAndStartShortAgainAfterASuccess) {
  log::init("test", true, log::Level::Warning);
  AcceptBackoff b("smtp 127.0.0.1:2525");
  const std::error_code emfile(EMFILE, std::generic_category());
  testing::internal::CaptureStderr();
  EXPECT_EQ(b.failed(emfile), milliseconds(10));
  EXPECT_EQ(b.failed(emfile), milliseconds(20));
  EXPECT_EQ(b.failed(emfile), milliseconds(40));
  for (int i = 0; i < 20; ++i) b.failed(emfile);
  EXPECT_EQ(b.failed(emfile), AcceptBackoff::kMaxPause);
  b.succeeded();
  EXPECT_EQ(b.failed(emfile), milliseconds(10));
  const std::string err = testing::internal::GetCapturedStderr();
  // 25 failures within a second: one line, naming the listener and why.
  EXPECT_EQ(lines(err, "accept failed"), 1u) << err;
  EXPECT_NE(err.find("smtp 127.0.0.1:2525: accept failed: "), std::string::npos) << err;
}

TEST(RateLimitedLog, OneLineASecondAndTheNextCountsWhatWasHeldBack) {
  log::init("test", true, log::Level::Warning);
  RateLimitedLog limited;
  testing::internal::CaptureStderr();
  for (int i = 0; i < 1000; ++i) limited.warning("milter: {} MTA connections open; closing a new one", i);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(lines(err, "closing a new one"), 1u) << err;
  EXPECT_NE(err.find("milter: 0 MTA connections open"), std::string::npos) << err;
  // The clock is the limiter's input: past a second the next call is logged
  // with the 999 calls held back since.
  std::this_thread::sleep_for(RateLimitedLog::kEvery + milliseconds(50));
  testing::internal::CaptureStderr();
  limited.warning("milter: {} MTA connections open; closing a new one", 1000);
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("milter: 1000 MTA connections open; closing a new one (999 more like it since the last line)"),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace mailhook::daemon
