// MapStore (map_store.h): the table of shared snapshots.
#include "policyd/map/map_store.h"

namespace mailhook::policyd::map {

FileStamp FileStamp::of(const struct stat& st) {
  return FileStamp{st.st_dev, st.st_ino, st.st_size, static_cast<long>(st.st_mtim.tv_sec),
                   static_cast<long>(st.st_mtim.tv_nsec)};
}

MapStore::Snapshot MapStore::get(const std::string& canonical, const FileStamp& current, const FileReader& read,
                                 std::string& error) {
  std::lock_guard lock(mu_);
  Entry& e = entries_[canonical];
  if (e.good.map && e.good.stamp == current) return e.good;
  if (e.failed && *e.failed == current) return e.good;  // reported already
  FileStamp stamp;
  std::string why;
  std::optional<std::string> text = read(stamp, why);
  std::shared_ptr<const AccessMap> parsed = text ? AccessMap::parse(*text, why) : nullptr;
  if (!parsed) {
    error = why;
    e.failed = current;
    return e.good;
  }
  e.good = Snapshot{std::move(parsed), stamp};
  e.failed.reset();
  return e.good;
}

}  // namespace mailhook::policyd::map
