// XCLIENT (Postfix XCLIENT_README): who may send it (--xclient-hosts, a
// CIDR list) and how its attributes change the client facts. Pure (no
// Asio; fuzzed by tests/fuzz/fuzz_xclient); never touches sockets. A
// decoded value with a control character is refused, never applied.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mailcore/event/event.h"

namespace mailhook::front {

class CidrList {
 public:
  // "127.0.0.1/32,::1,192.0.2.0/24"; nullopt (and `error`) when malformed.
  static std::optional<CidrList> parse(const std::string& text, std::string& error);
  bool contains(const std::string& address) const;
  bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    std::vector<unsigned char> bytes;
    unsigned prefix = 0;
  };
  std::vector<Entry> entries_;
};

// Applies "NAME=x ADDR=y ..." to `facts` (and `helo`, `esmtp`); values are
// xtext (RFC 3461 4); [UNAVAILABLE]/[TEMPUNAVAIL] clear a field. Returns
// an error text for a malformed or unknown attribute or a value that
// decodes to CR, LF, NUL or another control (501), "" when applied.
std::string apply_xclient(const std::string& attributes, ClientFacts& facts, std::string& helo, bool& esmtp);

}  // namespace mailhook::front
