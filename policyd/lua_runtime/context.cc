// Generation lifetime, the capped allocator, phase names and the end of
// the script notes a session holds.
#include "policyd/lua_runtime/context.h"

#include <cstdlib>
#include <cstring>
#include <ctime>

#include "policyd/lua_runtime/script_clock.h"

namespace mailhook::policyd {

void* CappedAllocator::alloc(void* ud, void* ptr, std::size_t osize, std::size_t nsize) {
  auto* a = static_cast<CappedAllocator*>(ud);
  if (ptr == nullptr) osize = 0;  // osize then encodes the object type
  if (nsize == 0) {
    std::free(ptr);
    a->used -= osize;
    return nullptr;
  }
  // Growing past the cap fails; shrinking always succeeds (Lua relies on it).
  if (nsize > osize && a->cap != 0 && a->used - osize + nsize > a->cap) return nullptr;
  void* p = std::realloc(ptr, nsize);
  if (p != nullptr) a->used = a->used - osize + nsize;
  return p;
}

Generation::~Generation() {
  if (L) lua_close(L);
}

Generation& generation_of(lua_State* L) {
  return **static_cast<Generation**>(lua_getextraspace(L));
}

SessionContext* current_session(lua_State* L) { return generation_of(L).current; }

std::int64_t script_now(lua_State* L) {
  const Generation& g = generation_of(L);
  return g.clock ? g.clock->now() : static_cast<std::int64_t>(std::time(nullptr));
}

void drop_transaction_notes(SessionContext& s) {
  if (s.transaction_notes == LUA_NOREF || s.generation == nullptr || s.generation->L == nullptr) return;
  luaL_unref(s.generation->L, LUA_REGISTRYINDEX, s.transaction_notes);
  s.transaction_notes = LUA_NOREF;
}

void drop_session_notes(SessionContext& s) {
  drop_transaction_notes(s);
  if (s.session_notes == LUA_NOREF || s.generation == nullptr || s.generation->L == nullptr) return;
  luaL_unref(s.generation->L, LUA_REGISTRYINDEX, s.session_notes);
  s.session_notes = LUA_NOREF;
}

}  // namespace mailhook::policyd
