// --test-clock-stdin: see clock_input.h. A line longer than kMaxLine is
// refused (stdin is the test tool's pipe, but a bound costs nothing).
#include "policyd/testing/clock_input.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <ctime>
#include <thread>

#include "mailcore/telemetry/log.h"

namespace mailhook::policyd::testing {
namespace {

constexpr std::size_t kMaxLine = 64;
constexpr std::int64_t kTenYears = 10LL * 366 * 86400;  // case_file.cc's bound on `advance:`

std::string utc(std::int64_t seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  char out[32] = "?";
  if (gmtime_r(&t, &tm) != nullptr) std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

}  // namespace

bool apply_clock_line(const std::string& line, ScriptClock& clock, std::string& error) {
  const auto space = line.find(' ');
  const std::string verb = line.substr(0, space);
  const std::string number = space == std::string::npos ? "" : line.substr(space + 1);
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), n);
  if (number.empty() || ec != std::errc() || end != number.data() + number.size()) {
    error = "expected \"set SECONDS\" or \"advance SECONDS\"";
    return false;
  }
  if (verb == "set") {
    if (n < 0) {
      error = "set: a time before 1970";
      return false;
    }
    clock.set(n);
    return true;
  }
  if (verb == "advance") {
    if (!clock.fixed()) {
      error = "advance: needs a \"set\" first";
      return false;
    }
    if (n <= 0 || n > kTenYears) {
      error = "advance: a positive number of seconds up to ten years";
      return false;
    }
    clock.advance(n);
    return true;
  }
  error = "expected \"set SECONDS\" or \"advance SECONDS\"";
  return false;
}

void follow_clock_input(std::shared_ptr<ScriptClock> clock) {
  log::warning("test clock: the scripts' clock follows standard input (--test-clock-stdin); a test setting, "
               "never for production");
  std::thread([clock = std::move(clock)] {
    std::string line;
    char c = 0;
    bool too_long = false;
    for (;;) {
      const ssize_t got = read(0, &c, 1);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;  // EOF: the clock keeps what it was last told
      if (c != '\n') {
        if (line.size() < kMaxLine) {
          line += c;
        } else {
          too_long = true;
        }
        continue;
      }
      std::string error;
      if (too_long) {
        log::warning("test clock: a line over {} bytes ignored", kMaxLine);
      } else if (!apply_clock_line(line, *clock, error)) {
        log::warning("test clock: \"{}\" ignored: {}", log::escaped(line), error);
      } else {
        log::notice("test clock: scripts now see {} ({})", utc(clock->now()), clock->now());
      }
      line.clear();
      too_long = false;
    }
  }).detach();
}

}  // namespace mailhook::policyd::testing
