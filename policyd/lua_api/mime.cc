// `mime.parse(path)`: the MIME summary of a message file (policyd/mime)
// as a Lua table. A mailhook extension; the VPOP3 dialect builds
// ProcessMessage's and CheckRecipients' arguments from it. Returns nil and
// an error string when the file cannot be read.
//   { subject=, from=, to={...}, cc={...}, size=,
//     sections={ {path=, content_type=, content_subtype=, content_type_filename=,
//                 content_disposition=, content_disposition_filename=, start=, ["end"]=}, ... },
//     attachments={ {mime_section=, name=, mime_type=, size=, type=}, ... } }
#include "policyd/lua_api/modules.h"
#include "policyd/lua_runtime/file_grant.h"
#include "policyd/mime/mime_summary.h"

namespace mailhook::policyd {
namespace {

void set_string(lua_State* L, const char* key, const std::string& v) {
  lua_pushlstring(L, v.data(), v.size());
  lua_setfield(L, -2, key);
}

void set_integer(lua_State* L, const char* key, std::uint64_t v) {
  lua_pushinteger(L, static_cast<lua_Integer>(v));
  lua_setfield(L, -2, key);
}

void push_list(lua_State* L, const std::vector<std::string>& list) {
  lua_createtable(L, static_cast<int>(list.size()), 0);
  for (std::size_t i = 0; i < list.size(); ++i) {
    lua_pushlstring(L, list[i].data(), list[i].size());
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
}

int parse(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  std::string error;
  // The same grant as io.open: the hook's message file, --lua-read-dir.
  const std::optional<std::string> granted = granted_path(L, path, FileAccess::Read, error);
  const std::optional<mime::Summary> m =
      granted ? mime::summarize(*granted, error) : std::optional<mime::Summary>();
  if (!granted) error = std::string(path) + ": " + error;
  if (!m) {
    lua_pushnil(L);
    lua_pushlstring(L, error.data(), error.size());
    return 2;
  }
  lua_createtable(L, 0, 7);
  set_string(L, "subject", m->subject);
  set_string(L, "from", m->from);
  set_integer(L, "size", m->size);
  push_list(L, m->to);
  lua_setfield(L, -2, "to");
  push_list(L, m->cc);
  lua_setfield(L, -2, "cc");
  lua_createtable(L, static_cast<int>(m->sections.size()), 0);
  for (std::size_t i = 0; i < m->sections.size(); ++i) {
    const mime::Section& s = m->sections[i];
    lua_createtable(L, 0, 8);
    set_string(L, "path", s.path);
    set_string(L, "content_type", s.content_type);
    set_string(L, "content_subtype", s.content_subtype);
    set_string(L, "content_type_filename", s.content_type_filename);
    set_string(L, "content_disposition", s.content_disposition);
    set_string(L, "content_disposition_filename", s.content_disposition_filename);
    set_integer(L, "start", s.start);
    set_integer(L, "end", s.end);
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  lua_setfield(L, -2, "sections");
  lua_createtable(L, static_cast<int>(m->attachments.size()), 0);
  for (std::size_t i = 0; i < m->attachments.size(); ++i) {
    const mime::Attachment& a = m->attachments[i];
    lua_createtable(L, 0, 5);
    set_integer(L, "mime_section", static_cast<std::uint64_t>(a.mime_section));
    set_string(L, "name", a.name);
    set_string(L, "mime_type", a.mime_type);
    set_integer(L, "size", a.size);
    set_string(L, "type", a.type);
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  lua_setfield(L, -2, "attachments");
  return 1;
}

constexpr luaL_Reg kFunctions[] = {{"parse", parse}, {nullptr, nullptr}};

}  // namespace

void open_mime(lua_State* L) {
  luaL_newlib(L, kFunctions);
  lua_setglobal(L, "mime");
}

}  // namespace mailhook::policyd
