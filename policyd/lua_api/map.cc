// `map`: map.file(path) -> an access map object with :lookup(key)
// (docs/lua-api.md "map"). The file is read through the Lua file grants
// (it must lie under --lua-read-dir / --lua-write-dir) and parsed once per
// change for all workers (policyd/map/map_store.h); each lookup compares
// the file's stat with the snapshot it holds and asks the store only when
// it changed. The object is a userdata holding an index into the
// generation's handles: nothing to free. No Lua error while a C++ object
// with a destructor is alive (Lua's errors are longjmp).
#include <sys/stat.h>

#include <string>

#include "mailcore/telemetry/log.h"
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/context.h"
#include "policyd/lua_runtime/file_grant.h"

namespace mailhook::policyd {
namespace {

constexpr const char* kMapType = "mailhook.map";

struct MapObject {
  std::size_t index;  // into Generation::maps; plain data, no __gc needed
};

map::FileStamp stamp_now(const std::string& canonical) {
  struct stat st {};
  // A vanished file keeps the old contents; the stamp of "missing" makes
  // the store try (and report) once.
  if (::stat(canonical.c_str(), &st) != 0) return map::FileStamp{};
  return map::FileStamp::of(st);
}

map::MapStore::Snapshot refresh(lua_State* L, Generation& g, const map::MapHandle& h, const map::FileStamp& now,
                                std::string& error) {
  return g.map_store->get(h.canonical, now, [&](map::FileStamp& stamp, std::string& why) {
    struct stat st {};
    std::optional<std::string> text = read_granted_file(L, h.path, st, why);
    if (text) stamp = map::FileStamp::of(st);
    return text;
  }, error);
}

// map.file(path) -> object | nil, "path: why"
int map_file(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  Generation& g = generation_of(L);
  std::size_t index = 0;
  bool ok = false;
  {
    std::string error;
    const std::optional<std::string> canonical = granted_path(L, path, FileAccess::Read, error);
    if (canonical) {
      index = g.maps.size();
      for (std::size_t i = 0; i < g.maps.size(); ++i) {
        if (g.maps[i].canonical == *canonical) index = i;
      }
      if (index == g.maps.size()) g.maps.push_back(map::MapHandle{path, *canonical, {}});
      map::MapHandle& h = g.maps[index];
      const map::FileStamp now = stamp_now(h.canonical);
      if (!(h.snapshot.map && h.snapshot.stamp == now)) {
        map::MapStore::Snapshot s = refresh(L, g, h, now, error);
        if (s.map && error.empty()) h.snapshot = std::move(s);
      }
      ok = h.snapshot.map && error.empty();
    }
    if (!ok) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", path, error.empty() ? "cannot be read" : error.c_str());
    }
  }
  if (!ok) return 2;
  auto* obj = static_cast<MapObject*>(lua_newuserdatauv(L, sizeof(MapObject), 0));
  obj->index = index;
  luaL_setmetatable(L, kMapType);
  return 1;
}

// m:lookup(key) -> value, matched_key | nil
int map_lookup(lua_State* L) {
  const auto* obj = static_cast<const MapObject*>(luaL_checkudata(L, 1, kMapType));
  std::size_t len = 0;
  const char* key = luaL_checklstring(L, 2, &len);
  Generation& g = generation_of(L);
  if (obj->index >= g.maps.size()) return luaL_error(L, "map object from another state");
  std::optional<map::Match> found;
  {
    map::MapHandle& h = g.maps[obj->index];
    const map::FileStamp now = stamp_now(h.canonical);
    if (!(h.snapshot.stamp == now)) {
      std::string error;
      h.snapshot = refresh(L, g, h, now, error);
      if (!error.empty()) {
        log::warning("map {}: {}; the previous contents stay in use", log::escape_text(h.path), log::escape_text(error));
      }
    }
    if (h.snapshot.map) found = h.snapshot.map->lookup(std::string_view(key, len));
  }
  if (!found) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, found->value.data(), found->value.size());
  lua_pushlstring(L, found->key.data(), found->key.size());
  return 2;
}

int map_tostring(lua_State* L) {
  const auto* obj = static_cast<const MapObject*>(luaL_checkudata(L, 1, kMapType));
  const Generation& g = generation_of(L);
  if (obj->index >= g.maps.size()) return lua_pushliteral(L, "map"), 1;
  lua_pushfstring(L, "map(%s)", g.maps[obj->index].path.c_str());
  return 1;
}

}  // namespace

void open_map(lua_State* L) {
  luaL_newmetatable(L, kMapType);
  lua_newtable(L);
  lua_pushcfunction(L, map_lookup);
  lua_setfield(L, -2, "lookup");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, map_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "map");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, map_file);
  lua_setfield(L, -2, "file");
  lua_setglobal(L, "map");
}

}  // namespace mailhook::policyd
