// The file, module and environment grants of the sandbox (file_grant.h).
// A path is checked on the directory it names, opened first, then asked
// for its canonical path through /proc/self/fd: a symbolic link or ".."
// in the directory part is resolved before the check, and what was
// checked is what is opened (openat on that directory fd, O_NOFOLLOW for
// the last component). No Lua error is raised while a C++ object with a
// destructor is alive (Lua's errors are longjmp).
#include "policyd/lua_runtime/file_grant.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace mailhook::policyd {
namespace {

// An open directory and the last component of the path inside it.
struct Located {
  int dir = -1;
  std::string leaf;
  std::string canonical;  // canonical directory + "/" + leaf
  Located() = default;
  Located(const Located&) = delete;
  Located& operator=(const Located&) = delete;
  ~Located() {
    if (dir >= 0) ::close(dir);
  }
};

// Opens the directory part of `path`; false with `error` and `err` set.
bool locate(std::string_view path, Located& out, std::string& error, int& err) {
  if (path.empty() || path.find('\0') != std::string_view::npos) {
    error = "not a file name";
    err = EINVAL;
    return false;
  }
  const std::size_t slash = path.find_last_of('/');
  const std::string parent = slash == std::string_view::npos ? "." : slash == 0 ? "/" : std::string(path.substr(0, slash));
  out.leaf = std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
  if (out.leaf.empty() || out.leaf == "." || out.leaf == "..") {
    error = "not a file name";
    err = EINVAL;
    return false;
  }
  out.dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (out.dir < 0) {
    err = errno;
    error = std::strerror(err);
    return false;
  }
  char link[64];
  char resolved[PATH_MAX + 1];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", out.dir);
  const ssize_t n = ::readlink(link, resolved, PATH_MAX);
  std::string dir;
  if (n > 0 && resolved[0] == '/') {
    dir.assign(resolved, static_cast<std::size_t>(n));
  } else if (::realpath(parent.c_str(), resolved) != nullptr) {  // no /proc: racy, still canonical
    dir = resolved;
  } else {
    err = errno;
    error = std::strerror(err);
    return false;
  }
  out.canonical = (dir == "/" ? "" : dir) + "/" + out.leaf;
  return true;
}

// `path` lies below `dir` (both canonical), on a component boundary.
bool under(const std::string& dir, const std::string& path) {
  if (dir == "/") return true;
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

bool allowed(lua_State* L, const std::string& canonical, FileAccess access) {
  const Generation& g = generation_of(L);
  for (const auto& d : g.write_dirs) {
    if (under(d, canonical)) return true;
  }
  if (access == FileAccess::Write) return false;
  for (const auto& d : g.read_dirs) {
    if (under(d, canonical)) return true;
  }
  // The message file policyd hands the running hook (hook.dot(path),
  // client.msg_file), for reading.
  const SessionContext* s = current_session(L);
  if (s == nullptr || s->msg_file.empty()) return false;
  const std::filesystem::path parent = s->msg_file.parent_path();
  const std::optional<std::string> spool = canonical_dir(parent.empty() ? "." : parent.string());
  return spool && canonical == (*spool == "/" ? "" : *spool) + "/" + s->msg_file.filename().string();
}

std::string refusal(FileAccess access) {
  return access == FileAccess::Read ? "not readable by scripts (no --lua-read-dir or --lua-write-dir grants it)"
                                    : "not writable by scripts (no --lua-write-dir grants it)";
}

// Checks `path` for `access`: true with `out` open on its directory.
bool check(lua_State* L, std::string_view path, FileAccess access, Located& out, std::string& error, int& err) {
  if (!locate(path, out, error, err)) return false;
  if (allowed(L, out.canonical, access)) return true;
  error = refusal(access);
  err = EACCES;
  return false;
}

// nil, "path: message", errno: the io library's failure convention.
int fail(lua_State* L, const char* path, const std::string& error, int err) {
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", path, error.c_str());
  lua_pushinteger(L, err);
  return 3;
}

// io.open's modes: [rwa]%+?b*
bool parse_mode(std::string_view m, int& flags, FileAccess& access) {
  if (m.empty() || std::string_view("rwa").find(m[0]) == std::string_view::npos) return false;
  std::size_t i = 1;
  const bool plus = i < m.size() && m[i] == '+';
  if (plus) ++i;
  while (i < m.size() && m[i] == 'b') ++i;
  if (i != m.size()) return false;
  switch (m[0]) {
    case 'r': flags = plus ? O_RDWR : O_RDONLY; break;
    case 'w': flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC; break;
    default: flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND; break;
  }
  access = m[0] == 'r' && !plus ? FileAccess::Read : FileAccess::Write;
  return true;
}

int close_stream(lua_State* L) {
  auto* p = static_cast<luaL_Stream*>(luaL_checkudata(L, 1, LUA_FILEHANDLE));
  const int res = std::fclose(p->f);
  return luaL_fileresult(L, res == 0, nullptr);
}

// Opens a granted regular file: nullptr with `error`/`err` when refused.
FILE* open_granted(lua_State* L, const char* path, const char* mode, std::string& error, int& err) {
  int flags = 0;
  FileAccess access = FileAccess::Read;
  parse_mode(mode, flags, access);
  Located at;
  if (!check(L, path, access, at, error, err)) return nullptr;
  // O_NONBLOCK: a FIFO in a granted directory must not block the worker.
  const int fd = ::openat(at.dir, at.leaf.c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0666);
  if (fd < 0) {
    err = errno;
    error = err == ELOOP ? "a symbolic link (not followed for scripts)" : std::strerror(err);
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    err = EINVAL;
    error = "not a regular file";
    return nullptr;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  FILE* f = ::fdopen(fd, mode);
  if (f == nullptr) {
    err = errno;
    error = std::strerror(err);
    ::close(fd);
  }
  return f;
}

// io.open(path [, mode]) within the grants.
int grant_io_open(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  const char* mode = luaL_optstring(L, 2, "r");
  int flags = 0;
  FileAccess access = FileAccess::Read;
  luaL_argcheck(L, parse_mode(mode, flags, access), 2, "invalid mode");
  auto* p = static_cast<luaL_Stream*>(lua_newuserdatauv(L, sizeof(luaL_Stream), 0));
  p->closef = nullptr;  // a closed file until it is open
  p->f = nullptr;
  luaL_setmetatable(L, LUA_FILEHANDLE);
  int err = 0;
  {
    std::string error;
    p->f = open_granted(L, path, mode, error, err);
    if (p->f == nullptr) return fail(L, path, error, err);
  }
  p->closef = &close_stream;
  return 1;
}

// io.close(file): never the default output (policyd's stdout).
int grant_io_close(lua_State* L) {
  luaL_checkudata(L, 1, LUA_FILEHANDLE);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 1, LUA_MULTRET);
  return lua_gettop(L);
}

// os.remove(path): inside a --lua-write-dir.
int grant_os_remove(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  std::string error;
  int err = 0;
  {
    Located at;
    if (check(L, path, FileAccess::Write, at, error, err)) {
      int rc = ::unlinkat(at.dir, at.leaf.c_str(), 0);
      if (rc != 0 && errno == EISDIR) rc = ::unlinkat(at.dir, at.leaf.c_str(), AT_REMOVEDIR);
      if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
      }
      err = errno;
      error = std::strerror(err);
    }
  }
  return fail(L, path, error, err);
}

// os.rename(from, to): both inside a --lua-write-dir.
int grant_os_rename(lua_State* L) {
  const char* from = luaL_checkstring(L, 1);
  const char* to = luaL_checkstring(L, 2);
  std::string error;
  int err = 0;
  const char* named = from;
  {
    Located a, b;
    if (check(L, from, FileAccess::Write, a, error, err)) {
      named = to;
      if (check(L, to, FileAccess::Write, b, error, err)) {
        if (::renameat(a.dir, a.leaf.c_str(), b.dir, b.leaf.c_str()) == 0) {
          lua_pushboolean(L, 1);
          return 1;
        }
        err = errno;
        error = std::strerror(err);
        named = from;
      }
    }
  }
  return fail(L, named, error, err);
}

// os.getenv(name): only the names of --lua-env; nil for every other.
int grant_os_getenv(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  const Generation& g = generation_of(L);
  const char* value = nullptr;
  for (const auto& n : g.lua_env) {
    if (n == name) value = std::getenv(name);
  }
  if (value) {
    lua_pushstring(L, value);
  } else {
    luaL_pushfail(L);
  }
  return 1;
}

// A module name: words of letters, digits, '_' and '-' between dots, so
// that no "..", "/" or absolute path can come out of the template.
bool module_name_ok(std::string_view name) {
  if (name.empty() || name.front() == '.' || name.back() == '.') return false;
  char prev = 0;
  for (const char c : name) {
    const bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!word && !(c == '.' && prev != '.')) return false;
    prev = c;
  }
  return true;
}

// Finds `name` on --lua-path and leaves its loaded chunk and file name on
// the stack (true), or an error message (false).
bool find_module(lua_State* L, const char* name) {
  std::string message;
  {
    const Generation& g = generation_of(L);
    if (!module_name_ok(name)) {
      message = std::string("module '") + name + "': not a module name (letters, digits, _ and -, between dots)";
    } else if (g.lua_path.empty()) {
      message = std::string("module '") + name + "' not found: require loads from --lua-path only, and it is not set";
    } else {
      std::string relative = name;
      for (char& c : relative) {
        if (c == '.') c = '/';
      }
      std::string tried;
      std::size_t start = 0;
      while (start <= g.lua_path.size()) {
        const std::size_t end = std::min(g.lua_path.find(';', start), g.lua_path.size());
        std::string file = g.lua_path.substr(start, end - start);
        start = end + 1;
        if (file.empty()) continue;
        for (std::size_t q = file.find('?'); q != std::string::npos; q = file.find('?', q + relative.size())) {
          file.replace(q, 1, relative);
        }
        const int rc = luaL_loadfilex(L, file.c_str(), "t");
        if (rc == LUA_OK) {
          lua_pushlstring(L, file.data(), file.size());
          return true;
        }
        if (rc != LUA_ERRFILE) return false;  // a syntax or memory error: its message is on top
        lua_pop(L, 1);
        tried += "\n\tno file '" + file + "'";
      }
      message = std::string("module '") + name + "' not found in --lua-path:" + tried;
    }
  }
  lua_pushlstring(L, message.data(), message.size());
  return false;
}

// require(name): package.loaded, package.preload, then --lua-path only.
int grant_require(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);  // 2
  if (lua_getfield(L, 2, name) != LUA_TNIL && lua_toboolean(L, -1)) return 1;
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);  // 3
  if (lua_getfield(L, 3, name) == LUA_TFUNCTION) {            // 4
    lua_pushliteral(L, ":preload:");                          // 5
  } else {
    lua_pop(L, 1);
    if (!find_module(L, name)) return lua_error(L);  // chunk 4, file 5
  }
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 5);
  lua_call(L, 2, 1);  // 6: what the module returned
  if (!lua_isnil(L, -1)) lua_setfield(L, 2, name);
  else lua_pop(L, 1);
  if (lua_getfield(L, 2, name) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
  }
  lua_pushvalue(L, 5);
  return 2;
}

// io.lines(path, ...) on top of the checked io.open; closes at the end
// like Lua's (and with the generic for's to-be-closed value).
constexpr const char* kIoLines = R"lua(
local open = ...
local error = error
io.lines = function(name, ...)
  if name == nil then error("io.lines: a file name is needed (scripts have no standard input)", 2) end
  local f, err = open(name, "r")
  if not f then error(err, 2) end
  local next_line = f:lines(...)
  local function at_end(...)
    if (...) == nil then f:close() end
    return ...
  end
  return function() return at_end(next_line()) end, nil, nil, f
end
)lua";

void set_function(lua_State* L, const char* lib, const char* name, lua_CFunction fn, bool original_upvalue = false) {
  lua_getglobal(L, lib);
  if (original_upvalue) {
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
  } else {
    lua_pushcfunction(L, fn);
  }
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

}  // namespace

void install_file_grants(lua_State* L) {
  const int top = lua_gettop(L);
  set_function(L, "io", "open", grant_io_open);
  set_function(L, "io", "close", grant_io_close, true);
  set_function(L, "os", "remove", grant_os_remove);
  set_function(L, "os", "rename", grant_os_rename);
  set_function(L, "os", "getenv", grant_os_getenv);
  lua_pushcfunction(L, grant_require);
  lua_setglobal(L, "require");
  if (luaL_loadbufferx(L, kIoLines, std::strlen(kIoLines), "=sandbox-io", "t") == LUA_OK) {
    lua_pushcfunction(L, grant_io_open);
    lua_pcall(L, 1, 0, 0);
  }
  lua_settop(L, top);
}

std::optional<std::string> granted_path(lua_State* L, const std::string& path, FileAccess access,
                                        std::string& error) {
  Located at;
  int err = 0;
  if (!check(L, path, access, at, error, err)) return std::nullopt;
  struct stat st {};
  if (::fstatat(at.dir, at.leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
    error = "a symbolic link (not followed for scripts)";
    return std::nullopt;
  }
  return at.canonical;
}

std::optional<std::string> read_granted_file(lua_State* L, const std::string& path, struct stat& st,
                                             std::string& error) {
  int err = 0;
  FILE* f = open_granted(L, path.c_str(), "r", error, err);
  if (f == nullptr) return std::nullopt;
  std::string text;
  char buf[8192];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0 || ::fstat(::fileno(f), &st) != 0;
  std::fclose(f);
  if (failed) {
    error = "read error";
    return std::nullopt;
  }
  return text;
}

std::optional<std::string> canonical_dir(const std::string& dir) {
  char resolved[PATH_MAX + 1];
  if (::realpath(dir.c_str(), resolved) == nullptr) return std::nullopt;
  struct stat st {};
  if (::stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) return std::nullopt;
  return std::string(resolved);
}

bool grant_read_dir(Generation& g, const std::string& dir) {
  std::optional<std::string> c = canonical_dir(dir);
  if (!c) return false;
  g.read_dirs.push_back(std::move(*c));
  return true;
}

}  // namespace mailhook::policyd
