// The pattern matcher of Lua 5.4 (manual §6.4.1), written from the manual
// and checked against stock Lua by tests/unit/policyd/patterns_test.cc and
// tests/fuzz/fuzz_lua_patterns.cc. A backtracking matcher: items nest as
// calls of match(), as in stock Lua, so that "pattern too complex" trips
// on the same patterns. It must never raise, allocate, or run past its
// StepWatch: every path that can take long goes through step().
#include "policyd/lua_api/pattern_matcher.h"

#include <cctype>
#include <cstring>

namespace mailhook::policyd {
namespace {

int byte_at(const char* p) { return static_cast<unsigned char>(*p); }

const char* fail(PatternMatch& m, PatternFault fault, int index = 0) {
  m.fault = fault;
  m.fault_index = index;
  return nullptr;
}

// The watch's turn: asked every check_every steps (without a watch the
// countdown only starts over).
[[gnu::noinline]] bool ask_watch(PatternMatch& m) {
  if (m.watch == nullptr) {
    m.countdown = UINT32_MAX;
    return true;
  }
  m.countdown = m.watch->check_every;
  if (!m.watch->expired(m.watch->context)) return true;
  m.fault = PatternFault::Stopped;
  return false;
}

// Counts `cost` steps of work; false (and PatternFault::Stopped) once the
// watch says the time is up.
inline bool step(PatternMatch& m, std::size_t cost = 1) {
  if (m.countdown > cost) [[likely]] {
    m.countdown -= static_cast<std::uint32_t>(cost);
    return true;
  }
  return ask_watch(m);
}

// %a %c %d %g %l %p %s %u %w %x (and %z, kept by 5.4 as deprecated);
// the upper-case letter is the complement; any other character after '%'
// stands for itself.
bool class_matches(int c, int letter) {
  bool in = false;
  switch (std::tolower(letter)) {
    case 'a': in = std::isalpha(c); break;
    case 'c': in = std::iscntrl(c); break;
    case 'd': in = std::isdigit(c); break;
    case 'g': in = std::isgraph(c); break;
    case 'l': in = std::islower(c); break;
    case 'p': in = std::ispunct(c); break;
    case 's': in = std::isspace(c); break;
    case 'u': in = std::isupper(c); break;
    case 'w': in = std::isalnum(c); break;
    case 'x': in = std::isxdigit(c); break;
    case 'z': in = c == 0; break;
    default: return letter == c;
  }
  return std::isupper(letter) ? !in : in;
}

// [set] from its '[' to its closing ']': classes, ranges x-y, single
// characters; "[^...]" is the complement.
bool set_matches(int c, const char* p, const char* close) {
  bool in = true;
  ++p;
  if (*p == '^') {
    in = false;
    ++p;
  }
  while (p < close) {
    if (*p == '%') {
      ++p;
      if (class_matches(c, byte_at(p))) return in;
      ++p;
    } else if (p[1] == '-' && p + 2 < close) {
      if (byte_at(p) <= c && c <= byte_at(p + 2)) return in;
      p += 3;
    } else {
      if (byte_at(p) == c) return in;
      ++p;
    }
  }
  return !in;
}

// The end of the single-character class starting at p, or nullptr with
// the fault of a malformed one. The first character of a set is taken as
// a member even when it is ']', as the manual's "[]...]" needs.
const char* item_end(PatternMatch& m, const char* p) {
  const char c = *p++;
  if (c == '%') {
    if (p >= m.pattern_end) return fail(m, PatternFault::EndsWithEscape);
    return p + 1;
  }
  if (c == '[') {
    if (*p == '^') ++p;
    do {
      if (p >= m.pattern_end) return fail(m, PatternFault::MissingBracket);
      const char member = *p++;
      if (member == '%' && p < m.pattern_end) ++p;
    } while (*p != ']');
    return p + 1;
  }
  return p;
}

bool single_matches(const PatternMatch& m, const char* s, const char* p, const char* ep) {
  if (s >= m.subject_end) return false;
  const int c = byte_at(s);
  switch (*p) {
    case '.': return true;
    case '%': return class_matches(c, byte_at(p + 1));
    case '[': return set_matches(c, p, ep - 1);
    default: return byte_at(p) == c;
  }
}

const char* match(PatternMatch& m, const char* s, const char* p);

// %bxy at s: from an x to the y that balances it.
const char* balance_end(PatternMatch& m, const char* s, const char* p) {
  if (p + 1 >= m.pattern_end) return fail(m, PatternFault::BalanceWithoutArgs);
  if (s >= m.subject_end || *s != p[0]) return nullptr;
  const char open = p[0];
  const char close = p[1];
  const char* const from = s;
  std::ptrdiff_t depth = 1;
  while (++s < m.subject_end) {
    if (*s == close) {
      if (--depth == 0) return step(m, s - from) ? s + 1 : nullptr;
    } else if (*s == open) {
      ++depth;
    }
  }
  step(m, s - from);
  return nullptr;
}

// %1-%9: the text of an earlier, closed capture again. A position capture
// never matches (stock Lua compares its negative length as unsigned).
const char* back_reference(PatternMatch& m, const char* s, int digit) {
  const int index = digit - '1';
  if (index < 0 || index >= m.level || m.captures[index].length == kCaptureOpen) {
    return fail(m, PatternFault::BadCaptureIndex, index + 1);
  }
  const std::ptrdiff_t length = m.captures[index].length;
  if (length < 0 || m.subject_end - s < length) return nullptr;
  if (!step(m, static_cast<std::size_t>(length))) return nullptr;
  if (std::memcmp(m.captures[index].start, s, static_cast<std::size_t>(length)) != 0) return nullptr;
  return s + length;
}

const char* open_capture(PatternMatch& m, const char* s, const char* p, std::ptrdiff_t kind) {
  if (m.level >= kMaxPatternCaptures) return fail(m, PatternFault::TooManyCaptures);
  m.captures[m.level] = PatternCapture{s, kind};
  ++m.level;
  const char* end = match(m, s, p);
  if (end == nullptr) --m.level;
  return end;
}

const char* close_capture(PatternMatch& m, const char* s, const char* p) {
  int open = m.level - 1;
  while (open >= 0 && m.captures[open].length != kCaptureOpen) --open;
  if (open < 0) return fail(m, PatternFault::BadCaptureClose);
  m.captures[open].length = s - m.captures[open].start;
  const char* end = match(m, s, p);
  if (end == nullptr) m.captures[open].length = kCaptureOpen;
  return end;
}

// x* and x+: as many as match, then fewer until the rest matches.
const char* greedy(PatternMatch& m, const char* s, const char* p, const char* ep) {
  std::ptrdiff_t count = 0;
  while (single_matches(m, s + count, p, ep)) ++count;
  if (!step(m, static_cast<std::size_t>(count))) return nullptr;
  for (; count >= 0; --count) {
    const char* end = match(m, s + count, ep + 1);
    if (end != nullptr || m.fault != PatternFault::None) return end;
  }
  return nullptr;
}

// x-: as few as let the rest match.
const char* lazy(PatternMatch& m, const char* s, const char* p, const char* ep) {
  for (;;) {
    const char* end = match(m, s, ep + 1);
    if (end != nullptr || m.fault != PatternFault::None) return end;
    if (!single_matches(m, s, p, ep)) return nullptr;
    ++s;
  }
}

// The items from p on; a plain item without a quantifier continues the
// loop instead of nesting, so only choices cost depth.
const char* match_items(PatternMatch& m, const char* s, const char* p) {
  for (;;) {
    if (!step(m)) return nullptr;
    if (p == m.pattern_end) return s;
    switch (*p) {
      case '(':
        if (p[1] == ')') return open_capture(m, s, p + 2, kCapturePosition);
        return open_capture(m, s, p + 1, kCaptureOpen);
      case ')':
        return close_capture(m, s, p + 1);
      case '$':
        if (p + 1 == m.pattern_end) return s == m.subject_end ? s : nullptr;
        break;  // a '$' elsewhere is itself
      case '%':
        if (p[1] == 'b') {
          s = balance_end(m, s, p + 2);
          if (s == nullptr) return nullptr;
          p += 4;
          continue;
        }
        if (p[1] == 'f') {
          p += 2;
          if (*p != '[') return fail(m, PatternFault::FrontierWithoutSet);
          const char* ep = item_end(m, p);
          if (ep == nullptr) return nullptr;
          // The subject's ends count as '\0' on either side.
          const int before = s == m.subject ? 0 : byte_at(s - 1);
          const int here = s < m.subject_end ? byte_at(s) : 0;
          if (set_matches(before, p, ep - 1) || !set_matches(here, p, ep - 1)) return nullptr;
          p = ep;
          continue;
        }
        if (p[1] >= '0' && p[1] <= '9') {
          s = back_reference(m, s, p[1]);
          if (s == nullptr) return nullptr;
          p += 2;
          continue;
        }
        break;
      default:
        break;
    }
    const char* ep = item_end(m, p);
    if (ep == nullptr) return nullptr;
    if (!single_matches(m, s, p, ep)) {
      if (*ep == '*' || *ep == '?' || *ep == '-') {  // zero of it is a match
        p = ep + 1;
        continue;
      }
      return nullptr;
    }
    switch (*ep) {
      case '?': {
        const char* end = match(m, s + 1, ep + 1);
        if (end != nullptr || m.fault != PatternFault::None) return end;
        p = ep + 1;
        continue;
      }
      case '+': return greedy(m, s + 1, p, ep);
      case '*': return greedy(m, s, p, ep);
      case '-': return lazy(m, s, p, ep);
      default:
        ++s;
        p = ep;
        continue;
    }
  }
}

const char* match(PatternMatch& m, const char* s, const char* p) {
  if (m.depth_left == 0) return fail(m, PatternFault::TooComplex);
  --m.depth_left;
  const char* end = match_items(m, s, p);
  ++m.depth_left;
  return end;
}

}  // namespace

void begin_match(PatternMatch& m, const char* subject, std::size_t subject_len, const char* pattern,
                 std::size_t pattern_len, const StepWatch* watch) {
  m.subject = subject;
  m.subject_end = subject + subject_len;
  m.pattern = pattern;
  m.pattern_end = pattern + pattern_len;
  m.watch = watch;
  m.countdown = watch ? watch->check_every : UINT32_MAX;
  m.depth_left = kMaxPatternDepth;
  m.level = 0;
  m.fault = PatternFault::None;
  m.fault_index = 0;
}

const char* match_at(PatternMatch& m, const char* at) {
  m.level = 0;
  m.depth_left = kMaxPatternDepth;
  m.fault = PatternFault::None;
  return match(m, at, m.pattern);
}

bool pattern_is_plain(const char* pattern, std::size_t len) {
  static constexpr char kMagic[] = "^$*+?.([%-";
  for (std::size_t i = 0; i < len; ++i) {
    if (pattern[i] != '\0' && std::strchr(kMagic, pattern[i]) != nullptr) return false;
  }
  return true;
}

}  // namespace mailhook::policyd
