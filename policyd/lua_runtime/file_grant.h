// What a script may touch outside its Lua state: the files the operator
// granted (--lua-read-dir, --lua-write-dir, the message file of the
// running hook, a qpsmtpd plugin's config directory), the modules on
// --lua-path and the variables of --lua-env. Must never let a path
// escape its granted directory with "..", a symbolic link or a race
// between the check and the open.
#pragma once

#include <lua.hpp>
#include <sys/stat.h>

#include <optional>
#include <string>

#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {

enum class FileAccess { Read, Write };

// Replaces io.open, io.lines, io.close, os.remove, os.rename, os.getenv
// and require in L's globals with the checked versions.
void install_file_grants(lua_State* L);

// The canonical path of `path` when the running script may read it (and
// it is not a symbolic link); nullopt and `error` otherwise. For C
// functions that take a path (mime.parse).
std::optional<std::string> granted_path(lua_State* L, const std::string& path, FileAccess access,
                                        std::string& error);

// Reads a whole granted regular file, opened as io.open opens it (the
// same checks, no symbolic link, no race between check and open): its
// text and its fstat, or nullopt and `error`. For C functions that parse
// an operator's file (map.file).
std::optional<std::string> read_granted_file(lua_State* L, const std::string& path, struct stat& st,
                                             std::string& error);

// Adds `dir` to g's read grants if it exists (its realpath); for the
// dialect adapters' own needs. false when it does not exist.
bool grant_read_dir(Generation& g, const std::string& dir);

// realpath() of an existing directory; nullopt when it is none.
std::optional<std::string> canonical_dir(const std::string& dir);

}  // namespace mailhook::policyd
