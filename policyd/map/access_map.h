// Access maps (Postfix access(5)-like, docs/lua-api.md "map"): the text of
// a map file parsed into an immutable table, and lookups in Postfix's
// order. Pure: no file, no lock, no Lua; the caller reads the file and
// shares the result (map_store.h). Patterns are POSIX extended regular
// expressions without back-references, so a match stays polynomial.
#pragma once

#include <regex.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mailcore/net/cidr.h"

namespace mailhook::policyd::map {

struct Match {
  std::string value;
  std::string key;  // the entry that matched, as written in the file
};

class AccessMap {
 public:
  // Parses a whole file; nullptr and `error` ("line N: why") on the first bad line.
  static std::shared_ptr<const AccessMap> parse(std::string_view text, std::string& error);

  // Postfix access(5) order. An IP address: the address, its parent
  // networks by octet (IPv4 "192.0.2", "192.0", "192") or by group (IPv6,
  // compressed form), then CIDR entries in file order. An address
  // "user@domain": the address, the domain, each parent domain, "user@".
  // Any other key (a HELO name, a domain): itself, then its parent
  // domains. Then /regex/ entries in file order over the key as given.
  // Strings compare case-insensitively; "" is looked up as "<>" (the null
  // sender, Postfix's smtpd_null_access_lookup_key).
  std::optional<Match> lookup(std::string_view key) const;

  std::size_t size() const { return exact_.size() + networks_.size() + patterns_.size(); }

  AccessMap() = default;
  AccessMap(const AccessMap&) = delete;
  AccessMap& operator=(const AccessMap&) = delete;
  ~AccessMap();

 private:
  struct Entry {
    std::string key, value;
  };
  struct NetworkEntry {
    net::Cidr network;  // mailcore's one CIDR matcher
    Entry entry;
  };
  struct Pattern {
    regex_t re;
    Entry entry;
  };
  std::optional<Match> exact(const std::string& lowered) const;

  std::unordered_map<std::string, Entry> exact_;  // lower-case key
  std::vector<NetworkEntry> networks_;
  std::vector<std::unique_ptr<Pattern>> patterns_;
};

}  // namespace mailhook::policyd::map
