// The Lua side of the string pattern functions: arguments, results and
// errors exactly as stock Lua 5.4 gives them, the matching itself in
// pattern_matcher.cc. Errors are raised only here, after the matcher has
// returned, and no local below has a destructor, so a Lua error (a
// longjmp in C builds of Lua) unwinds nothing it should not.
#include "policyd/lua_api/patterns.h"

#include <cstring>

#include "policyd/lua_api/pattern_matcher.h"

namespace mailhook::policyd {
namespace {

// A PatternWatch seen from the matcher, which knows no lua_State.
struct WatchedCall {
  lua_State* L;
  const PatternWatch* watch;
};

bool watch_expired(void* context) {
  auto* call = static_cast<WatchedCall*>(context);
  return call->watch->expired(call->L, call->watch->context);
}

const PatternWatch* watch_of(lua_State* L, int upvalue) {
  return static_cast<const PatternWatch*>(lua_touserdata(L, lua_upvalueindex(upvalue)));
}

// The 0-based offset where a search starting at Lua position `init`
// begins: negative counts from the end, before the start is the start.
std::size_t start_offset(lua_Integer init, std::size_t len) {
  if (init > 0) return static_cast<std::size_t>(init) - 1;
  if (init == 0 || init < -static_cast<lua_Integer>(len)) return 0;
  return len - static_cast<std::size_t>(-init);
}

int raise_fault(lua_State* L, const PatternMatch& m, const PatternWatch* watch) {
  switch (m.fault) {
    case PatternFault::Stopped: return watch->raise(L, watch->context);
    case PatternFault::EndsWithEscape: return luaL_error(L, "malformed pattern (ends with '%%')");
    case PatternFault::MissingBracket: return luaL_error(L, "malformed pattern (missing ']')");
    case PatternFault::FrontierWithoutSet: return luaL_error(L, "missing '[' after '%%f' in pattern");
    case PatternFault::BalanceWithoutArgs: return luaL_error(L, "malformed pattern (missing arguments to '%%b')");
    case PatternFault::BadCaptureIndex: return luaL_error(L, "invalid capture index %%%d", m.fault_index);
    case PatternFault::BadCaptureClose: return luaL_error(L, "invalid pattern capture");
    case PatternFault::TooManyCaptures: return luaL_error(L, "too many captures");
    case PatternFault::TooComplex: return luaL_error(L, "pattern too complex");
    case PatternFault::None: break;
  }
  return 0;
}

// Capture i of a match from s to e; without captures, %1 is the whole match.
void push_capture(lua_State* L, const PatternMatch& m, int i, const char* s, const char* e) {
  if (i >= m.level) {
    if (i != 0) luaL_error(L, "invalid capture index %%%d", i + 1);
    lua_pushlstring(L, s, static_cast<std::size_t>(e - s));
    return;
  }
  const PatternCapture& c = m.captures[i];
  if (c.length == kCaptureOpen) luaL_error(L, "unfinished capture");
  if (c.length == kCapturePosition) {
    lua_pushinteger(L, c.start - m.subject + 1);
  } else {
    lua_pushlstring(L, c.start, static_cast<std::size_t>(c.length));
  }
}

// Every capture, or the whole match when there are none and s is given.
int push_captures(lua_State* L, const PatternMatch& m, const char* s, const char* e) {
  const int count = (m.level == 0 && s != nullptr) ? 1 : m.level;
  luaL_checkstack(L, count, "too many captures");
  for (int i = 0; i < count; ++i) push_capture(L, m, i, s, e);
  return count;
}

// The first `needle` in `hay`. memchr and memcmp as stock Lua does, the
// fastest for the needles policies look for, but quadratic at worst
// ("aaa...ab" in "aaa...a"): past a linear amount of comparing, glibc's
// memmem (two-way, linear) finishes, so no plain search needs a watch.
const char* plain_search(const char* hay, std::size_t hay_len, const char* needle, std::size_t needle_len) {
  if (needle_len == 0) return hay;
  if (needle_len > hay_len) return nullptr;
  const char* const last = hay + (hay_len - needle_len);
  std::size_t compared = 0;
  for (const char* at = hay; at <= last; ++at) {
    at = static_cast<const char*>(std::memchr(at, needle[0], static_cast<std::size_t>(last - at) + 1));
    if (at == nullptr) return nullptr;
    if (std::memcmp(at + 1, needle + 1, needle_len - 1) == 0) return at;
    compared += needle_len;
    if (compared > hay_len) {
      const std::size_t left = static_cast<std::size_t>(hay + hay_len - (at + 1));
      return static_cast<const char*>(memmem(at + 1, left, needle, needle_len));
    }
  }
  return nullptr;
}

int find_or_match(lua_State* L, bool find) {
  std::size_t subject_len = 0;
  std::size_t pattern_len = 0;
  const char* subject = luaL_checklstring(L, 1, &subject_len);
  const char* pattern = luaL_checklstring(L, 2, &pattern_len);
  const std::size_t init = start_offset(luaL_optinteger(L, 3, 1), subject_len);
  if (init > subject_len) {
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || pattern_is_plain(pattern, pattern_len))) {
    const char* at = plain_search(subject + init, subject_len - init, pattern, pattern_len);
    if (at == nullptr) {
      luaL_pushfail(L);
      return 1;
    }
    const std::size_t offset = static_cast<std::size_t>(at - subject);
    lua_pushinteger(L, static_cast<lua_Integer>(offset + 1));
    lua_pushinteger(L, static_cast<lua_Integer>(offset + pattern_len));
    return 2;
  }
  const PatternWatch* watch = watch_of(L, 1);
  WatchedCall call{L, watch};
  const StepWatch steps{watch_expired, &call, watch->check_every};
  const bool anchored = *pattern == '^';
  PatternMatch m;
  begin_match(m, subject, subject_len, pattern + anchored, pattern_len - anchored, &steps);
  const char* from = subject + init;
  do {
    if (const char* end = match_at(m, from)) {
      if (!find) return push_captures(L, m, from, end);
      lua_pushinteger(L, from - subject + 1);
      lua_pushinteger(L, end - subject);
      return push_captures(L, m, nullptr, nullptr) + 2;
    }
    if (m.fault != PatternFault::None) return raise_fault(L, m, watch);
  } while (from++ < m.subject_end && !anchored);
  luaL_pushfail(L);
  return 1;
}

int str_find(lua_State* L) { return find_or_match(L, true); }
int str_match(lua_State* L) { return find_or_match(L, false); }

// The gmatch iterator. Upvalues: subject, pattern, next offset, end of
// the last match (-1: none yet; an empty match there is skipped), watch.
int gmatch_next(lua_State* L) {
  std::size_t subject_len = 0;
  std::size_t pattern_len = 0;
  const char* subject = lua_tolstring(L, lua_upvalueindex(1), &subject_len);
  const char* pattern = lua_tolstring(L, lua_upvalueindex(2), &pattern_len);
  const lua_Integer next = lua_tointeger(L, lua_upvalueindex(3));
  const lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
  const PatternWatch* watch = watch_of(L, 5);
  WatchedCall call{L, watch};
  const StepWatch steps{watch_expired, &call, watch->check_every};
  PatternMatch m;
  begin_match(m, subject, subject_len, pattern, pattern_len, &steps);
  for (const char* from = subject + next; from <= m.subject_end; ++from) {
    const char* end = match_at(m, from);
    if (end != nullptr && (last < 0 || end != subject + last)) {
      lua_pushinteger(L, end - subject);
      lua_copy(L, -1, lua_upvalueindex(3));
      lua_replace(L, lua_upvalueindex(4));
      return push_captures(L, m, from, end);
    }
    if (m.fault != PatternFault::None) return raise_fault(L, m, watch);
  }
  return 0;
}

// gmatch(s, pattern [, init]); a leading '^' is an ordinary character here.
int str_gmatch(lua_State* L) {
  std::size_t subject_len = 0;
  luaL_checklstring(L, 1, &subject_len);
  luaL_checkstring(L, 2);
  std::size_t init = start_offset(luaL_optinteger(L, 3, 1), subject_len);
  if (init > subject_len) init = subject_len + 1;  // past the end: no match at all
  lua_settop(L, 2);
  lua_pushinteger(L, static_cast<lua_Integer>(init));
  lua_pushinteger(L, -1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, gmatch_next, 5);
  return 1;
}

// A string replacement: %0 the match, %1-%9 captures, %% a '%'.
void add_template(lua_State* L, luaL_Buffer& b, const PatternMatch& m, const char* s, const char* e) {
  std::size_t len = 0;
  const char* text = lua_tolstring(L, 3, &len);
  const char* const end = text + len;
  while (const char* escape = static_cast<const char*>(std::memchr(text, '%', static_cast<std::size_t>(end - text)))) {
    luaL_addlstring(&b, text, static_cast<std::size_t>(escape - text));
    const char what = escape[1];  // the string's NUL when '%' is last
    if (what == '%') {
      luaL_addchar(&b, '%');
    } else if (what == '0') {
      luaL_addlstring(&b, s, static_cast<std::size_t>(e - s));
    } else if (what >= '1' && what <= '9') {
      const int i = what - '1';
      if (i < m.level && m.captures[i].length >= 0) {
        luaL_addlstring(&b, m.captures[i].start, static_cast<std::size_t>(m.captures[i].length));
      } else if (i == 0 && m.level == 0) {
        luaL_addlstring(&b, s, static_cast<std::size_t>(e - s));
      } else {
        push_capture(L, m, i, s, e);  // the whole match, a position, or the error
        luaL_addvalue(&b);
      }
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", '%');
    }
    text = escape + 2;
  }
  luaL_addlstring(&b, text, static_cast<std::size_t>(end - text));
}

// Adds the replacement of the match from s to e; false when a function or
// table gave false or nil, which keeps the match as it was.
bool add_replacement(lua_State* L, luaL_Buffer& b, const PatternMatch& m, const char* s, const char* e,
                     int type) {
  if (type == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    const int n = push_captures(L, m, s, e);
    lua_call(L, n, 1);
  } else if (type == LUA_TTABLE) {
    push_capture(L, m, 0, s, e);
    lua_gettable(L, 3);
  } else {
    add_template(L, b, m, s, e);
    return true;
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(&b, s, static_cast<std::size_t>(e - s));
    return false;
  }
  if (!lua_isstring(L, -1)) luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(&b);
  return true;
}

// gsub(s, pattern, repl [, n]); an empty match right after a match is skipped.
int str_gsub(lua_State* L) {
  std::size_t subject_len = 0;
  std::size_t pattern_len = 0;
  const char* subject = luaL_checklstring(L, 1, &subject_len);
  const char* pattern = luaL_checklstring(L, 2, &pattern_len);
  const int type = lua_type(L, 3);
  const lua_Integer max_n = luaL_optinteger(L, 4, static_cast<lua_Integer>(subject_len) + 1);
  luaL_argexpected(L, type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION || type == LUA_TTABLE,
                   3, "string/function/table");
  const PatternWatch* watch = watch_of(L, 1);
  WatchedCall call{L, watch};
  const StepWatch steps{watch_expired, &call, watch->check_every};
  const bool anchored = *pattern == '^';
  PatternMatch m;
  begin_match(m, subject, subject_len, pattern + anchored, pattern_len - anchored, &steps);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char* from = subject;
  const char* last = nullptr;
  lua_Integer n = 0;
  bool changed = false;
  while (n < max_n) {
    const char* end = match_at(m, from);
    if (end != nullptr && end != last) {
      ++n;
      changed = add_replacement(L, b, m, from, end, type) || changed;
      from = last = end;
    } else if (m.fault != PatternFault::None) {
      return raise_fault(L, m, watch);
    } else if (from < m.subject_end) {
      luaL_addchar(&b, *from++);
    } else {
      break;
    }
    if (anchored) break;
  }
  if (changed) {
    luaL_addlstring(&b, from, static_cast<std::size_t>(m.subject_end - from));
    luaL_pushresult(&b);
  } else {
    lua_pushvalue(L, 1);
  }
  lua_pushinteger(L, n);
  return 2;
}

constexpr luaL_Reg kFunctions[] = {
    {"find", str_find}, {"match", str_match}, {"gmatch", str_gmatch}, {"gsub", str_gsub}, {nullptr, nullptr}};

}  // namespace

void install_patterns(lua_State* L, const PatternWatch& watch) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_STRLIBNAME);
  lua_pushlightuserdata(L, const_cast<PatternWatch*>(&watch));
  luaL_setfuncs(L, kFunctions, 1);
  lua_pop(L, 2);
}

}  // namespace mailhook::policyd
