// The map files of the whole process (map.file): one parsed AccessMap per
// file, shared by every worker and generation as an immutable snapshot,
// parsed again only when the file's identity (inode, size, mtime) changes.
// Thread-safe: one mutex around the table, held while a changed file is
// read and parsed (so it is parsed once), never during a lookup. Never opens a file itself: the caller reads it through the
// Lua file grants and hands the text over.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "policyd/map/access_map.h"

namespace mailhook::policyd::map {

// What says "the file changed": a rename, a rewrite, a touch.
struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = -1;
  long mtime_sec = 0;
  long mtime_nsec = 0;
  bool operator==(const FileStamp&) const = default;
  static FileStamp of(const struct stat& st);
};

// Reads the file: its text and the stamp of what was read (fstat on the
// open file), or nullopt and `error`.
using FileReader = std::function<std::optional<std::string>(FileStamp& stamp, std::string& error)>;

class MapStore {
 public:
  struct Snapshot {
    std::shared_ptr<const AccessMap> map;
    FileStamp stamp;
  };
  // The map of `canonical` for a file now at `current`: the shared
  // snapshot when it has that stamp; else read and parsed once for every
  // worker. A file that does not parse (or cannot be read) leaves the last
  // good snapshot in place: `error` says why, once per change of the file
  // (`error` stays empty for a failure already reported). nullptr only
  // when there never was a good one.
  Snapshot get(const std::string& canonical, const FileStamp& current, const FileReader& read, std::string& error);

 private:
  struct Entry {
    Snapshot good;
    std::optional<FileStamp> failed;  // the stamp that did not parse, reported
  };
  std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

// One map.file of one generation (lua_api/map.cc): what its Lua object
// refers to, and the snapshot it used last.
struct MapHandle {
  std::string path;       // as the script gave it: read again through the grants
  std::string canonical;  // the store's key
  MapStore::Snapshot snapshot;
};

}  // namespace mailhook::policyd::map
