// libFuzzer target: policyd's string.find/match/gmatch/gsub
// (policyd/lua_api/patterns.cc) against stock Lua 5.4 on the same
// (subject, pattern). Ours runs first under a small step budget; where it
// was stopped, stock Lua might take minutes, so that op is not compared.
// Everything else (values, types, captures, positions, errors) must match.
// Input: two bytes N (big-endian), the pattern (N bytes, or the rest), the subject.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "policyd/lua_api/patterns.h"

namespace {

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
  for _ = 1, 100 do
    local r = table.pack(it())
    out[#out + 1] = ser(table.unpack(r, 1, r.n))
    if r[1] == nil then break end
  end
  return table.concat(out, " | ")
end
local tbl = {a = "[A]", b = false, [1] = "one"}
local function fn(a, b, ...) if a == "b" then return nil end return tostring(a) .. "," .. tostring(b) end
OPS = {
  function(s, p) return string.find(s, p) end,
  function(s, p) return string.find(s, p, 3) end,
  function(s, p) return string.find(s, p, -2) end,
  function(s, p) return string.find(s, p, 1, true) end,
  function(s, p) return string.match(s, p) end,
  function(s, p) return string.match(s, p, #s + 1) end,
  function(s, p) return iterate(string.gmatch(s, p)) end,
  function(s, p) return iterate(string.gmatch(s, p, 2)) end,
  function(s, p) return string.gsub(s, p, "<%0>") end,
  function(s, p) return string.gsub(s, p, "%1%%%2") end,
  function(s, p) return string.gsub(s, p, fn) end,
  function(s, p) return string.gsub(s, p, tbl, 2) end,
}
function RUN(i, s, p) return ser(pcall(OPS[i], s, p)) end
)LUA";
constexpr int kOpCount = 12;

struct Budget {
  int asked = 0;
};
constexpr int kChecks = 64;  // of 1024 steps each: ~65,000 steps per op
bool budget_spent(lua_State*, void* context) { return ++static_cast<Budget*>(context)->asked > kChecks; }
int raise_budget(lua_State* L, void*) { return luaL_error(L, "fuzz step budget spent"); }

Budget budget;
const mailhook::policyd::PatternWatch watch{budget_spent, raise_budget, &budget, 1024};

lua_State* new_state(bool ours) {
  lua_State* L = luaL_newstate();
  luaL_openlibs(L);
  if (ours) mailhook::policyd::install_patterns(L, watch);
  if (luaL_dostring(L, kOps) != LUA_OK) __builtin_trap();
  return L;
}

std::string run(lua_State* L, int op, const std::string& subject, const std::string& pattern) {
  lua_getglobal(L, "RUN");
  lua_pushinteger(L, op);
  lua_pushlstring(L, subject.data(), subject.size());
  lua_pushlstring(L, pattern.data(), pattern.size());
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) __builtin_trap();
  std::string out = lua_tostring(L, -1);
  lua_pop(L, 1);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static lua_State* const stock = new_state(false);
  static lua_State* const ours = new_state(true);
  if (size < 2) return 0;
  const std::size_t wanted = static_cast<std::size_t>(data[0]) << 8 | data[1];
  const std::size_t pattern_len = wanted < size - 2 ? wanted : size - 2;
  const std::string pattern(reinterpret_cast<const char*>(data) + 2, pattern_len);
  const std::string subject(reinterpret_cast<const char*>(data) + 2 + pattern_len, size - 2 - pattern_len);
  for (int op = 1; op <= kOpCount; ++op) {
    budget.asked = 0;
    const std::string actual = run(ours, op, subject, pattern);
    if (budget.asked > kChecks) continue;  // stopped: stock might run for minutes
    const std::string expected = run(stock, op, subject, pattern);
    if (actual != expected) {
      std::fprintf(stderr, "op %d differs\n  stock: %s\n  ours:  %s\n", op, expected.c_str(), actual.c_str());
      __builtin_trap();
    }
  }
  lua_gc(ours, LUA_GCSTEP, 0);
  lua_gc(stock, LUA_GCSTEP, 0);
  return 0;
}
