// policyd's string.find/match/gmatch/gsub (lua_api/patterns.cc) against
// stock Lua 5.4: the same Lua code runs in a state with the stock
// functions and in one with ours, and every result (values, their types,
// captures, positions, error messages) must be the same. Then the watch:
// a step budget stops a catastrophic match, and in the runtime the hook
// timeout does (issue 19, finding 8(d)).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "policyd/lua_api/patterns.h"
#include "tests/unit/policyd/runtime_harness.h"

using namespace mailhook;
using namespace mailhook::policyd;
using namespace mailhook::policyd::testing;

namespace {

// Runs in both states: OPS[name](s, p) under pcall, every result written
// out with its type, so 1 and 1.0, nil and nothing, all differ.
const char* kOps = R"LUA(
local function ser(...)
  local out = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    out[#out + 1] = (math.type(v) or type(v)) .. ":" ..
                    (type(v) == "string" and string.format("%q", v) or tostring(v))
  end
  return table.concat(out, " ")
end
local function iterate(it)
  local out = {}
  for _ = 1, 300 do
    local r = table.pack(it())
    out[#out + 1] = ser(table.unpack(r, 1, r.n))
    if r[1] == nil then break end
  end
  return table.concat(out, " | ")
end
local tbl = setmetatable({a = "[A]", b = false, ab = 7, [1] = "one", [3] = "three"},
                         {__index = function(_, k) if k == "c" then return "(c)" end end})
local function fn(...)
  local n = select('#', ...)
  local first = ...
  if first == "b" then return nil end
  if first == "c" then return false end
  if first == "d" then return {} end
  if n >= 2 then return table.concat({...}, ",") end
  return "<" .. tostring(first) .. ">"
end
OPS = {
  find = function(s, p) return string.find(s, p) end,
  find_m100 = function(s, p) return string.find(s, p, -100) end,
  find_m2 = function(s, p) return string.find(s, p, -2) end,
  find_0 = function(s, p) return string.find(s, p, 0) end,
  find_2 = function(s, p) return string.find(s, p, 2) end,
  find_len = function(s, p) return string.find(s, p, #s) end,
  find_len1 = function(s, p) return string.find(s, p, #s + 1) end,
  find_len2 = function(s, p) return string.find(s, p, #s + 2) end,
  find_big = function(s, p) return string.find(s, p, math.maxinteger) end,
  find_small = function(s, p) return string.find(s, p, math.mininteger) end,
  find_plain = function(s, p) return string.find(s, p, 1, true) end,
  find_plain3 = function(s, p) return string.find(s, p, 3, 1) end,
  find_plain_end = function(s, p) return string.find(s, p, #s + 1, true) end,
  find_notplain = function(s, p) return string.find(s, p, 1, false) end,
  find_method = function(s, p) return s:find(p) end,
  match = function(s, p) return string.match(s, p) end,
  match_2 = function(s, p) return string.match(s, p, 2) end,
  match_m1 = function(s, p) return string.match(s, p, -1) end,
  match_len1 = function(s, p) return string.match(s, p, #s + 1) end,
  match_len2 = function(s, p) return string.match(s, p, #s + 2) end,
  match_method = function(s, p) return s:match(p, 1) end,
  gmatch = function(s, p) return iterate(string.gmatch(s, p)) end,
  gmatch_2 = function(s, p) return iterate(string.gmatch(s, p, 2)) end,
  gmatch_m1 = function(s, p) return iterate(string.gmatch(s, p, -1)) end,
  gmatch_m100 = function(s, p) return iterate(string.gmatch(s, p, -100)) end,
  gmatch_len1 = function(s, p) return iterate(string.gmatch(s, p, #s + 1)) end,
  gmatch_len2 = function(s, p) return iterate(string.gmatch(s, p, #s + 2)) end,
  gmatch_method = function(s, p) return iterate(s:gmatch(p)) end,
  gsub_whole = function(s, p) return string.gsub(s, p, "<%0>") end,
  gsub_first = function(s, p) return string.gsub(s, p, "[%1]") end,
  gsub_two = function(s, p) return string.gsub(s, p, "%2%1") end,
  gsub_pct = function(s, p) return string.gsub(s, p, "%%%0%%") end,
  gsub_bad = function(s, p) return string.gsub(s, p, "x%y") end,
  gsub_trailing = function(s, p) return string.gsub(s, p, "x%") end,
  gsub_plain = function(s, p) return string.gsub(s, p, "-") end,
  gsub_number = function(s, p) return string.gsub(s, p, 7.5) end,
  gsub_table = function(s, p) return string.gsub(s, p, tbl) end,
  gsub_fn = function(s, p) return string.gsub(s, p, fn) end,
  gsub_n1 = function(s, p) return string.gsub(s, p, "(%0)", 1) end,
  gsub_n2 = function(s, p) return string.gsub(s, p, "(%0)", 2.0) end,
  gsub_n0 = function(s, p) return string.gsub(s, p, "(%0)", 0) end,
  gsub_nneg = function(s, p) return string.gsub(s, p, "(%0)", -1) end,
  gsub_method = function(s, p) return s:gsub(p, "%0%0") end,
}
function RUN(name, s, p)
  return ser(pcall(OPS[name], s, p))
end
)LUA";

// A PatternWatch that stops after `checks` questions: a step budget.
struct Budget {
  int checks = 0;  // left; below 0: never stops
  int asked = 0;
};
bool budget_spent(lua_State*, void* context) {
  auto* b = static_cast<Budget*>(context);
  ++b->asked;
  return b->checks >= 0 && b->asked > b->checks;
}
int raise_budget(lua_State* L, void*) { return luaL_error(L, "pattern step budget spent"); }

class PatternConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    stock_ = luaL_newstate();
    ours_ = luaL_newstate();
    luaL_openlibs(stock_);
    luaL_openlibs(ours_);
    install_patterns(ours_, watch_);
    for (lua_State* L : {stock_, ours_}) ASSERT_EQ(luaL_dostring(L, kOps), LUA_OK) << lua_tostring(L, -1);
  }
  void TearDown() override {
    lua_close(stock_);
    lua_close(ours_);
  }

  static std::string run(lua_State* L, const char* op, const std::string& s, const std::string& p) {
    lua_getglobal(L, "RUN");
    lua_pushstring(L, op);
    lua_pushlstring(L, s.data(), s.size());
    lua_pushlstring(L, p.data(), p.size());
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) return std::string("harness error: ") + lua_tostring(L, -1);
    std::string out = lua_tostring(L, -1);
    lua_pop(L, 1);
    return out;
  }

  // Every op on (s, p) in both states; returns how many results differed.
  int compare(const std::string& s, const std::string& p, const std::vector<const char*>& ops) {
    int differed = 0;
    for (const char* op : ops) {
      const std::string expected = run(stock_, op, s, p);
      const std::string actual = run(ours_, op, s, p);
      ++compared_;
      if (expected != actual) {
        ++differed;
        ADD_FAILURE() << op << "(" << quoted(s) << ", " << quoted(p) << ")\n  stock: " << expected
                      << "\n  ours:  " << actual;
      }
    }
    return differed;
  }

  static std::string quoted(const std::string& v) {
    std::string out = "\"";
    for (unsigned char c : v) {
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
        out += static_cast<char>(c);
      } else {
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", c);
        out += hex;
      }
    }
    return out + "\"";
  }

  static const std::vector<const char*>& all_ops() {
    static const std::vector<const char*> ops = {
        "find", "find_m100", "find_m2", "find_0", "find_2", "find_len", "find_len1", "find_len2", "find_big",
        "find_small", "find_plain", "find_plain3", "find_plain_end", "find_notplain", "find_method", "match",
        "match_2", "match_m1", "match_len1", "match_len2", "match_method", "gmatch", "gmatch_2", "gmatch_m1",
        "gmatch_m100", "gmatch_len1", "gmatch_len2", "gmatch_method", "gsub_whole", "gsub_first", "gsub_two",
        "gsub_pct", "gsub_bad", "gsub_trailing", "gsub_plain", "gsub_number", "gsub_table", "gsub_fn",
        "gsub_n1", "gsub_n2", "gsub_n0", "gsub_nneg", "gsub_method"};
    return ops;
  }

  lua_State* stock_ = nullptr;
  lua_State* ours_ = nullptr;
  Budget never_{-1, 0};
  PatternWatch watch_{budget_spent, raise_budget, &never_, 64};  // asked often: the check itself is exercised
  int compared_ = 0;
};

struct Case {
  std::string subject;
  std::string pattern;
};

std::string rep(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::string all_bytes() {
  std::string out;
  for (int c = 0; c < 256; ++c) out += static_cast<char>(c);
  return out;
}

using namespace std::string_literals;

std::vector<Case> hand_written_cases() {
  std::vector<Case> cases = {
      // empty subjects and patterns, anchors
      {"", ""}, {"", "a"}, {"", "^"}, {"", "$"}, {"", "^$"}, {"", ".*"}, {"", ".-"}, {"", "()"}, {"", "a?"},
      {"", "a*"}, {"", "a+"}, {"", "a-"}, {"", "%f[%a]"}, {"", "%f[^%a]"}, {"", "(.*)"}, {"", "^(.-)$"},
      {"alo", ""}, {"alo", "a"}, {"alo", "^a"}, {"alo", "o$"}, {"alo", "^alo$"}, {"alo", "l.*"}, {"alo", "^"},
      {"alo", "$"}, {"alo", "^$"}, {"alo", "$$"}, {"alo", "^^"}, {"^alo", "^^"}, {"a^lo", "a^"}, {"a$lo", "a$l"},
      {"alo$", "o$$"}, {"alo$", "%$"}, {"^a^a", "^a"}, {"^a^a", "%^a"},
      // single items and quantifiers
      {"aaab", "a*"}, {"aaab", "a+"}, {"aaab", "a-b"}, {"aaab", "a?b"}, {"aaab", "^a-$"}, {"aaab", "a-"},
      {"aaab", "b*"}, {"aaab", "b+"}, {"aaab", "b-"}, {"aaab", "ab*"}, {"aaab", "a*b*"}, {"aaa", "^.-$"},
      {"aabaaabaaabaaaba", "b.*b"}, {"aabaaabaaabaaaba", "b.-b"}, {"alo xo", ".o$"}, {"alo xo", "x?o"},
      {" \n isto \xe9 assim", "%S%S*"}, {" \n isto \xe9 assim", "%S*$"}, {" \n isto \xe9 assim", "[a-z]*$"},
      {"um caracter ? extra", "[^%sa-z]"}, {"\xe1", "\xe1?"}, {"\xe1\x62l", "\xe1?b?l?"}, {"  \xe1\x62l", "\xe1?b?l?"},
      {"aa", "^aa?a?a"}, {"]]]\xe1\x62", "[^]]"}, {"0alo alo", "%x*"}, {"alo alo", "%C+"}, {"(\xe1lo)", "%(\xe1"},
      {"aloALO", "%l*"}, {"aLo_ALO", "%a*"}, {"  \n\r*&\n\r   xuxu  \n\n", "%g%g%g+"}, {"aaa", "a?a?a?a?"},
      {"aaa", ".?.?.?.?b"}, {"abc", "a.c"}, {"ab\nc", "b.c"}, {"abc", "..."}, {"ab", "...."},
      // captures
      {"alo", "(%a*)"}, {"alo", "(%a)"}, {"hello world", "(%w+) (%w+)"}, {"key = value", "(%w+)%s*=%s*(%w+)"},
      {"  trim me  ", "^%s*(.-)%s*$"}, {"abc", "()a()"}, {"abc", "()"}, {"x = 7, y = 8", "()(%w+)()"},
      {"abc", "(a)(b)(c)"}, {"abc", "((a)(b)(c))"}, {"abc", "(a(b(c)))"}, {"abc", "((((a))))"}, {"abc", "(a*(.)%w(%s*))"},
      {"testtset", "^(tes(t+)set)$"}, {"  ", "(%s*)"}, {"abc", "(x?)"}, {"abc", "()()()"}, {"abc", "(b)()"},
      {"date: 2026-12-07", "(%d+)-(%d+)-(%d+)"}, {"a,b,,c", "([^,]*)"}, {"a,b,,c", "([^,]*),?"},
      // back-references
      {"abc", "(a)%1"}, {"aa", "(a)%1"}, {"abcabc", "(abc)%1"}, {"abab", "((a)(b))%1%2%3"}, {"abab", "((a)(b))%2"},
      {"==========", "^([=]*)=%1$"}, {"===========", "^([=]*)=%1$"}, {"xax", "(x)a%1"}, {"abcabd", "(ab.)%1"},
      {"a\"b\"c", "([\"'])(.-)%1"}, {"a'b\"c'", "([\"'])(.-)%1"}, {"aa", "()a%1"}, {"aaaa", "(a+)%1"},
      {"x[[long]]y", "%[(=*)%[(.-)%]%1%]"}, {"[==[x]==]", "%[(=*)%[(.-)%]%1%]"},
      // %b and %f
      {"THE (quick) fox", "%f[%a]%a+"}, {"THE (quick) fox", "%f[%l]%a+"}, {"THE (quick) fox", "%f[%A]"},
      {"[[]] [][] [[[[", "%b[]"}, {"(foo(bar))baz", "%b()"}, {"'a' 'b'", "%b''"}, {"((()", "%b()"},
      {"(()", "%b()"}, {"x(a)(b)", "%b()%b()"}, {"abba", "%bab"}, {"]a[", "%b[]"}, {"if x then y end", "%f[%w]%w+"},
      {"aaa aaa", "%f[%w]a+%f[%W]"}, {"hello", "%f[%z]"}, {"hello", "%f[^%z]"}, {"hello", "%f[%a]%f[%A]"},
      {"THE (quick) fox", "%f[%a]%a+%f[%A]"}, {"a b c", "%f[%S]."}, {"abc", "%f[a-c]"}, {"abc", "%f[]"},
      // sets
      {"a-z", "[a-]"}, {"a-z", "[-a]"}, {"a-z", "[^-]"}, {"]x", "[]]"}, {"]x", "[^]]"}, {"]-a", "[]-a]+"},
      {"a%b", "[%%]"}, {"a%b", "[a-%%]+"}, {"x]y", "[%]]"}, {"abc_12", "[%w_]+"}, {"a-b", "[%-]"},
      {"!\"#$%&'()*+,-./", "[!-/]+"}, {"a^b", "[%^]"}, {"a^b", "[b^]+"}, {"azAZ09", "[%a%d]+"},
      {"abc", "[^%a]"}, {"abc", "[^]"}, {"abc", "[a-c"}, {"abc", "[a-%"}, {"abc", "[%"}, {"abc", "["},
      {"abc", "[^"}, {"abc", "[]"}, {"a]", "[]"}, {"ab]", "[a]]"}, {"-", "[a-]"}, {"zz", "[z-a]"},
      {"\x80\xff", "[\x80-\xff]+"}, {"a\x80", "[^\x80]"}, {"\x01\x02", "[\x01-\x02]+"},
      // malformed patterns (errors only where the matcher gets to them)
      {"abc", "%"}, {"abc", "x%"}, {"abc", "a%"}, {"abc", "%f"}, {"abc", "%fx"}, {"abc", "%f[a"},
      {"abc", "%b"}, {"abc", "%ba"}, {"abc", "b%b"}, {"abc", "("}, {"abc", ")"}, {"abc", "a)"}, {"abc", "(()"},
      {"abc", "%0"}, {"abc", "%9"}, {"abc", "(a)%2"}, {"abc", "((a)%2)"}, {"abc", "(a%1)"}, {"abc", "x(a%1)"},
      {"abc", "(a"}, {"abc", "a("}, {"abc", "()%1"}, {"abc", "(()"}, {"abc", ")("}, {"abc", "%1"},
      {"abc", "(a)(b"}, {"abc", "(a)(b)%3"},
      // embedded NULs
      {"a\0b"s, "\0"s}, {"a\0b"s, "%z"}, {"a\0b"s, "[%z]"}, {"a\0b\0"s, "[\0-\1]+"s}, {"a\0b"s, "%Z+"},
      {"a\0b"s, "a%zb"}, {"a\0b"s, "a\0"s}, {"a\0b"s, "(.)\0(.)"s}, {"a\0b"s, ".-%z"}, {"\0\0"s, "%z*$"},
      {"a\0b"s, "[^\0]+"s}, {"a\0b"s, "\0b"s}, {"a\0b"s, "%b\0b"s}, {"x"s, "x\0"s}, {"a\0\0b"s, "%f[%Z]"},
      // gsub and gmatch classics
      {"hello world", "%w*"}, {"hello world", "%w+"}, {"hello world", "o"}, {"abc", "%w"}, {"abc", ""},
      {"abc", "(%w)()"}, {"abc", "a"}, {"abc", "b"}, {"abc", "c"}, {"abc", "d"}, {"abcd", "(b)(c)"},
      {"a b c d", "(%w) (%w)"}, {"$x$ $y$", "%$(%w+)%$"}, {"ab ab ab", "ab"}, {" x ", "%s*"}, {"xyz", ".-"},
      {"abc", "^a"}, {"abc", "^b"}, {"aaa", "^a*"}, {"abc", "^"}, {"abc", "$"}, {"abc", "()$"},
      {"one two three", "(%w+)"}, {"k=v, k2=v2", "(%w+)=(%w+)"}, {"a.b.c", "%."}, {"a.b.c", "."},
      {"user@example.com", "^[%w.]+@[%w.]+$"}, {"<user@example.com>", "^<(.-)@(.-)>$"},
      {"192.0.2.7", "^(%d+)%.(%d+)%.(%d+)%.(%d+)$"}, {"Received: from x", "^(%w+):%s*(.*)"},
      {"Subject: =?utf-8?B?aGk=?=", "=%?([^?]+)%?(%a)%?([^?]*)%?="}, {"cd", "(c)(d)"}, {"abcde", "(b)(c)(d)"},
      // depth and capture limits
      {rep("a", 10), rep("a?", 199)}, {rep("a", 10), rep("a?", 200)}, {rep("a", 10), rep("a?", 201)},
      {rep("a", 10), rep("a*", 199)}, {rep("a", 10), rep("a*", 201)}, {rep("a", 3), rep("a-", 250)},
      {"a", rep("(", 31) + "a" + rep(")", 31)}, {"a", rep("(", 32) + "a" + rep(")", 32)},
      {"a", rep("(", 33) + "a" + rep(")", 33)}, {"abc", rep("()", 32)}, {"abc", rep("()", 33)},
      {rep("a", 300), rep("a", 300)}, {rep("a", 300), rep(".", 300)}, {rep("a", 300), rep("%f[a]", 300)},
      {rep("ab", 150), rep("%bab", 150)}, {rep("a", 12), rep("a?", 12) + rep("a", 12)},
      // the depth limit itself: 200 nested items match, 201 are "too complex"
      {rep("a", 250), rep("a?", 198)}, {rep("a", 250), rep("a?", 199)}, {rep("a", 250), rep("a?", 200)},
      {rep("a", 250), rep("a*", 199)}, {rep("a", 250), rep("a*", 200)},
      {"aaa", rep("a-", 199)}, {"aaa", rep("a-", 200)},
      {rep("a", 250), rep("(a?)", 16) + rep("a?", 183)}, {rep("a", 250), rep("(a?)", 16) + rep("a?", 184)},
      {rep("a", 250), rep("a?", 190) + "%1"}, {rep("a", 250), "(" + rep("a?", 197) + ")"},
      {rep("a", 250), "(" + rep("a?", 198) + ")"}, {rep("a", 250), "()" + rep("a?", 198)},
      {rep("x", 1000), "x*y"}, {rep("x", 1000), ".-y"}, {rep("x", 500) + "y", "(x*)y"},
      {rep("(", 300) + rep(")", 300), "%b()"}, {rep("ab", 100), "(ab)%1"},
      // plain searches past their linear share of comparing (memmem takes over)
      {rep("a", 3000) + "b", rep("a", 100) + "b"}, {rep("a", 3000), rep("a", 100) + "b"},
      {rep("a", 300) + "b" + rep("a", 300) + "b", rep("a", 200) + "b"}, {rep("ab", 2000) + "abb", "abb"},
      {rep("a", 99) + "b" + rep("a", 100) + "b", rep("a", 100) + "b"}, {rep("xy", 500) + "x", "yx"},
  };
  // Every class and its complement over every byte.
  const std::string bytes = all_bytes();
  for (const char* cls : {"a", "c", "d", "g", "l", "p", "s", "u", "w", "x", "z", "A", "C", "D", "G", "L", "P", "S",
                          "U", "W", "X", "Z", ".", "q", "%", "]", "["}) {
    const std::string c = std::string("%") + cls;
    cases.push_back({bytes, c + "+"});
    cases.push_back({bytes, "[" + c + "]+"});
    cases.push_back({bytes, "[^" + c + "]+"});
    cases.push_back({bytes, c + "-" + c + "$"});
  }
  for (const char* set : {"[a-z]", "[A-Z0-9]", "[\x01-\x1f]", "[^\x20-\x7e]", "[ -]", "[%a-]", "[a-%d]",
                          "[%w%s]", "[.]", "[*+?]", "[%[%]]", "[\x7f-\xff]"}) {
    cases.push_back({bytes, std::string(set) + "+"});
    cases.push_back({bytes, std::string(set) + "*" + std::string(set)});
  }
  return cases;
}

TEST_F(PatternConformance, HandWrittenCasesGiveWhatStockLuaGives) {
  const std::vector<Case> cases = hand_written_cases();
  int differed = 0;
  for (const Case& c : cases) differed += compare(c.subject, c.pattern, all_ops());
  EXPECT_EQ(differed, 0);
  EXPECT_GT(cases.size(), 300u);
  EXPECT_GT(compared_, 10000);
}

// Patterns assembled from pieces that interact: captures, quantifiers,
// sets, anchors, back-references, and pieces that are malformed alone.
TEST_F(PatternConformance, RandomPatternsGiveWhatStockLuaGives) {
  static const char* const kPieces[] = {
      "a", "b", "c", ".", "%a", "%d", "%s", "%w", "%W", "[ab]", "[^a]", "[a-c]", "[%d%s]", "(", ")", "()",
      "*", "+", "-", "?", "^", "$", "%1", "%2", "%b()", "%bab", "%f[%w]", "%f[^a]", "%", "[", "]", "%%", "%.",
      "\0", "%z"};
  static const char kSubjectBytes[] = "aabbc( )1 .%\n";
  std::mt19937 random(19);
  auto pick = [&](int n) { return static_cast<int>(random() % static_cast<unsigned>(n)); };
  const std::vector<const char*> ops = {"find", "find_2", "find_m2", "match", "gmatch", "gmatch_2", "gsub_whole",
                                        "gsub_first", "gsub_fn", "gsub_table", "gsub_n1"};
  int differed = 0;
  for (int i = 0; i < 4000 && differed < 20; ++i) {
    std::string pattern;
    const int pieces = 1 + pick(7);
    for (int j = 0; j < pieces; ++j) {
      const char* piece = kPieces[pick(sizeof kPieces / sizeof kPieces[0])];
      pattern += piece[0] == '\0' ? std::string(1, '\0') : std::string(piece);
    }
    std::string subject;
    const int length = pick(12);
    for (int j = 0; j < length; ++j) subject += kSubjectBytes[pick(sizeof kSubjectBytes - 1)];
    differed += compare(subject, pattern, ops);
  }
  EXPECT_EQ(differed, 0);
}

// Argument checking: conversions, the wrong types, the messages.
TEST_F(PatternConformance, ArgumentErrorsAndConversionsGiveWhatStockLuaGives) {
  const char* calls[] = {
      "return string.find(nil, 'a')", "return string.find('a', nil)", "return string.find('a')",
      "return string.find(123, 2)", "return string.find(12.5, '%.')", "return string.find('abc', 'b', '2')",
      "return string.find('abc', 'b', 2.0)", "return string.find('abc', 'b', 2.5)", "return string.find('abc', 'b', {})",
      "return string.find('abc', 'b', nil, nil)", "return string.find('a.c', '.', 1, {})",
      "return string.match(nil, 'a')", "return string.match('a')", "return string.match('abc', 'b', 'x')",
      "return string.match(1234, '(%d)(%d)')", "return string.gmatch(nil, 'a')", "return string.gmatch('a')",
      "return string.gmatch('abc', '.', 'x')", "local r = {} for a in string.gmatch(12345, 3) do r[#r+1] = a end return table.concat(r, ',')",
      "return string.gsub('abc', 'b', nil)", "return string.gsub('abc', 'b', true)", "return string.gsub('abc', 'b')",
      "return string.gsub('abc', 'b', 'x', '1')", "return string.gsub('abc', 'b', 'x', 1.5)",
      "return string.gsub('abc', 'b', 'x', 'y')", "return string.gsub(nil, 'b', 'x', 'y')",
      "return string.gsub('abc', '%w', function() return {} end)", "return string.gsub('abc', '%w', function() return true end)",
      "return string.gsub('abc', '%w', function() return 1.5 end)", "return string.gsub('abc', '%w', {a = 2})",
      "return string.gsub('abc', '(a', 'x')", "return string.gsub('abc', '(a', '%1')", "return string.gsub('abc', '(a', '%0')",
      "return string.gsub('abc', '(a', function(x) return x end)", "return string.gsub('abc', '(a', {})",
      "return string.gsub('abc', '()', '%1')", "return string.gsub('abc', '()', {[1] = 'p', [2] = 'q'})",
      "return string.gsub('abc', '%w', '%1%1')", "return string.gsub('', '', 'x')", "return string.gsub('', '^', 'x', 0)",
      "return string.gsub('abc', '^', 'x')", "return string.gsub('abc', '$', 'x')", "return string.gsub('abc', '^$', 'x')",
      "return string.gsub('abc', 'b', 12)", "return string.gsub('abc', 'b', '%')", "return ('x'):rep(3):gsub('x', '%%1')",
      "local s = 0 for k, v in string.gmatch('a=1, b=2', '(%w+)=(%w+)') do s = s + v end return s",
      "local it = string.gmatch('abc', '(') return it()", "local it = string.gmatch('abc', '.') it() it() it() return it(), it()",
      "return string.find('abc', 'b', -1e300)", "return string.find('abc', 'b', math.huge)",
  };
  auto eval = [](lua_State* L, const char* code) {
    std::string wrapped = std::string("return (function(...) return select('#', ...), ... end)((function() ") + code +
                          " end)())";
    if (luaL_loadstring(L, wrapped.c_str()) != LUA_OK) return std::string("load: ") + lua_tostring(L, -1);
    const int base = lua_gettop(L) - 1;
    const int rc = lua_pcall(L, 0, LUA_MULTRET, 0);
    std::string out = rc == LUA_OK ? "ok" : "err";
    for (int i = base + 1; i <= lua_gettop(L); ++i) {
      out += " ";
      out += lua_isinteger(L, i) ? "int:" : std::string(luaL_typename(L, i)) + ":";
      std::size_t n = 0;
      const char* text = luaL_tolstring(L, i, &n);
      if (lua_type(L, i) != LUA_TFUNCTION && lua_type(L, i) != LUA_TTABLE) out.append(text, n);
      lua_pop(L, 1);
    }
    lua_settop(L, base);
    return out;
  };
  for (const char* code : calls) EXPECT_EQ(eval(stock_, code), eval(ours_, code)) << code;
}

TEST_F(PatternConformance, StringMethodsAreOurs) {
  ASSERT_EQ(luaL_dostring(ours_, "local mt = getmetatable('') return mt.__index.find == string.find and "
                                 "string.find ~= nil and ('x').gsub == string.gsub"), LUA_OK);
  EXPECT_TRUE(lua_toboolean(ours_, -1));
  lua_getglobal(ours_, "string");
  lua_getfield(ours_, -1, "find");
  lua_getglobal(stock_, "string");
  lua_getfield(stock_, -1, "find");
  EXPECT_NE(lua_tocfunction(ours_, -1), lua_tocfunction(stock_, -1));
}

// The step budget: a catastrophic match stops, with the watch's error,
// in each of the four functions; the state goes on working afterwards.
class PatternBudget : public ::testing::Test {
 protected:
  void SetUp() override {
    L_ = luaL_newstate();
    luaL_openlibs(L_);
    install_patterns(L_, watch_);
    // 2^24-ish steps unchecked: minutes for stock Lua on the four below.
    ASSERT_EQ(luaL_dostring(L_, "S = string.rep('a', 30) .. '@example.com' "
                                "P = string.rep('a?', 30) .. string.rep('a', 30) .. '$'"), LUA_OK);
  }
  void TearDown() override { lua_close(L_); }

  // The error of running `code`, without the "chunk:line: " luaL_error
  // puts before it, or "no error".
  std::string error_of(const char* code) {
    budget_.asked = 0;
    if (luaL_dostring(L_, code) == LUA_OK) {
      lua_settop(L_, 0);
      return "no error";
    }
    std::string message = lua_tostring(L_, -1);
    lua_settop(L_, 0);
    const std::size_t where = message.rfind(": ");
    return where == std::string::npos ? message : message.substr(where + 2);
  }

  lua_State* L_ = nullptr;
  Budget budget_{1000, 0};  // 1000 checks of 256 steps
  PatternWatch watch_{budget_spent, raise_budget, &budget_, 256};
};

TEST_F(PatternBudget, CatastrophicFindStopsWithTheWatchError) {
  EXPECT_EQ(error_of("return string.find(S, P)"), "pattern step budget spent");
  EXPECT_EQ(budget_.asked, 1001);
}

TEST_F(PatternBudget, MatchGmatchGsubAndMethodsStopToo) {
  for (const char* code : {"return string.match(S, P)", "for x in string.gmatch(S, P) do end",
                           "return string.gsub(S, P, 'x')", "return S:find(P)", "return S:gsub(P, function() end)",
                           "return string.gsub(S, '(' .. P .. ')', {})", "return string.find(S, P, 5)"}) {
    EXPECT_EQ(error_of(code), "pattern step budget spent") << code;
    EXPECT_EQ(budget_.asked, 1001) << code;
  }
}

TEST_F(PatternBudget, LongScansCountAsSteps) {
  // Few items, long scans: each start position scans the rest of 1 MB.
  // Counted by the item, these would take hours before the budget is spent.
  for (const char* code : {"return string.find(string.rep('(', 1 << 20), '%b()')",
                           "return string.find(string.rep('x', 1 << 20), '.*y')",
                           "return string.find(string.rep('x', 1 << 20), '(x*)%1y')"}) {
    EXPECT_EQ(error_of(code), "pattern step budget spent") << code;
  }
  // A long linear match within the budget ends normally.
  EXPECT_EQ(error_of("assert(string.find(string.rep('x', 1 << 16), '^.*$') == 1)"), "no error");
}

TEST_F(PatternBudget, OrdinaryMatchesAndPlainFindsStayWithinTheBudget) {
  EXPECT_EQ(error_of("assert(string.find(S, '@(%w+)%.com$') == 31) assert(S:match('^(a+)@') == string.rep('a', 30))"
                     "assert(select(2, S:gsub('a', 'b')) == 31) assert(string.find(S, P, 1, true) == nil)"),
            "no error");
  EXPECT_LE(budget_.asked, 1);
}

TEST_F(PatternBudget, TheStateWorksAfterAStop) {
  EXPECT_EQ(error_of("return string.find(S, P)"), "pattern step budget spent");
  EXPECT_EQ(error_of("assert(select(2, pcall(string.find, S, P)) == 'pattern step budget spent')"
                     "assert(string.find('xay', 'a') == 2)"),
            "no error");
}

// In policyd: the hook timeout stops a match like any Lua code, with 451.
constexpr const char* kCatastrophe = R"(
local P = string.rep("a?", 30) .. string.rep("a", 30) .. "$"
function hook.noop() return "250 alive\r\n" end
)";

TEST_F(RuntimeTest, CatastrophicFindInAHookGives451AtTheHookTimeout) {
  config_.hook_timeout = std::chrono::milliseconds(100);
  load(std::string(kCatastrophe) + "function hook.rcpt(r) if string.find(r, P) then return '550 5.7.1 no\\r\\n' end end");
  Client c = connect();
  EXPECT_EQ(text(c.send(EventKind::Rcpt, "", std::string(30, 'a') + "@example.com")),
            "451 4.3.0 Policy temporarily unavailable, try again later");
  EXPECT_EQ(text(c.send(EventKind::Noop)), "250 alive");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 alive");
}

TEST_F(RuntimeTest, PcallCannotSwallowAStoppedMatch) {
  config_.hook_timeout = std::chrono::milliseconds(100);
  load(std::string(kCatastrophe) + "function hook.rcpt(r) while true do pcall(string.gsub, r, P, 'x') end end");
  EXPECT_EQ(connect().send(EventKind::Rcpt, "", std::string(30, 'a') + "@example.com").reply.code, 451);
}

TEST_F(RuntimeTest, GmatchAndMethodCallsStopInACoroutineToo) {
  config_.hook_timeout = std::chrono::milliseconds(100);
  load(std::string(kCatastrophe) + R"(
function hook.rcpt(r)
  local co = coroutine.wrap(function() for x in r:gmatch(P) do end end)
  co()
end
function hook.mail(m) return m:match(P) end)");
  Client c = connect();
  EXPECT_EQ(c.send(EventKind::Mail, "", std::string(30, 'a') + "@example.com").reply.code, 451);
  EXPECT_EQ(c.send(EventKind::Rcpt, "", std::string(30, 'a') + "@example.com").reply.code, 451);
  EXPECT_EQ(text(c.send(EventKind::Noop)), "250 alive");
}

TEST_F(RuntimeTest, PatternsAtLoadTimeRunUnderTheLoadTimeoutNotTheHookTimeout) {
  config_.hook_timeout = std::chrono::milliseconds(1);
  // Some milliseconds of backtracking while loading: past 1 ms, yet no
  // hook runs, so nothing stops it.
  load(R"(
local s = string.rep("a", 16) .. "@"
LOADED = string.find(s, string.rep("a?", 16) .. string.rep("a", 16) .. "$")
function hook.noop() return "250 loaded " .. tostring(LOADED) .. "\r\n" end)");
  EXPECT_EQ(text(connect().send(EventKind::Noop)), "250 loaded nil");
}

}  // namespace
