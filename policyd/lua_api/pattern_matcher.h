// The Lua 5.4 pattern matcher (manual §6.4.1) behind string.find, match,
// gmatch and gsub, written for policyd so that a match over client data
// can be stopped: it counts its steps and asks a StepWatch every so often
// whether to go on. It never raises, allocates or touches a lua_State; a
// stop or a malformed pattern comes back as a PatternFault for the Lua
// glue (patterns.cc) to turn into the error stock Lua would raise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mailhook::policyd {

// Why a match ended without a result (None: it simply did not match).
enum class PatternFault : std::uint8_t {
  None,
  Stopped,              // the StepWatch said stop: the hook is past its deadline
  EndsWithEscape,       // "malformed pattern (ends with '%')"
  MissingBracket,       // "malformed pattern (missing ']')"
  FrontierWithoutSet,   // "missing '[' after '%f' in pattern"
  BalanceWithoutArgs,   // "malformed pattern (missing arguments to '%b')"
  BadCaptureIndex,      // "invalid capture index %N" (N in fault_index)
  BadCaptureClose,      // "invalid pattern capture"
  TooManyCaptures,      // "too many captures"
  TooComplex,           // "pattern too complex": nesting past kMaxPatternDepth
};

// Asked every `check_every` steps; true stops the match (PatternFault::Stopped).
struct StepWatch {
  bool (*expired)(void* context);
  void* context;
  std::uint32_t check_every;
};

constexpr int kMaxPatternCaptures = 32;  // Lua's LUA_MAXCAPTURES
constexpr int kMaxPatternDepth = 200;    // Lua's MAXCCALLS: nested items before "pattern too complex"
constexpr std::ptrdiff_t kCaptureOpen = -1;      // '(' seen, ')' not yet
constexpr std::ptrdiff_t kCapturePosition = -2;  // "()": a position, not text

struct PatternCapture {
  const char* start;
  std::ptrdiff_t length;  // or kCaptureOpen / kCapturePosition
};

// One subject and one pattern; plain data (trivially destructible), so a
// Lua error raised above it unwinds nothing.
struct PatternMatch {
  const char* subject;
  const char* subject_end;
  const char* pattern;      // after a leading '^', if the caller took it as an anchor
  const char* pattern_end;
  const StepWatch* watch;   // nullptr: never stopped
  std::uint32_t countdown;  // steps until the watch is asked again
  int depth_left;
  int level;                // captures opened so far
  PatternCapture captures[kMaxPatternCaptures];
  PatternFault fault;
  int fault_index;          // the capture index of BadCaptureIndex
};

// Prepares `m`; the subject and the pattern must outlive it. Both may hold
// NUL bytes, and each must be readable one byte past its end (Lua strings
// are NUL-terminated), as the manual's grammar lets "[" or "%" end a pattern.
void begin_match(PatternMatch& m, const char* subject, std::size_t subject_len, const char* pattern,
                 std::size_t pattern_len, const StepWatch* watch);

// Tries the pattern at `at` only. Returns the end of the match, or nullptr
// with m.fault saying whether there was more to it than no match.
const char* match_at(PatternMatch& m, const char* at);

// True if the pattern has no magic character, so find can search plainly.
bool pattern_is_plain(const char* pattern, std::size_t len);

}  // namespace mailhook::policyd
