// FakeDns: DNS answers from a table instead of the network, for policy
// tests (mailhook-policyd --test). A FakeResolver answers every query from
// the table (a name with no entry: NXDOMAIN), always later on the loop,
// never inside query(), as a real resolver would.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "policyd/dns/resolver.h"

namespace mailhook::policyd::dns {

class FakeDns {
 public:
  // One line of a case file's `dns:` entries:
  //   NAME A 192.0.2.1 | AAAA ::1 | MX 10 host | TXT text… | PTR host | CNAME host | NS host
  //   NAME NXDOMAIN | SERVFAIL | REFUSED | TIMEOUT
  // false and `error` when the line does not read.
  bool add(const std::string& line, std::string& error);
  void clear();
  Answer answer(std::string_view name, int type) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<Record>> records_;  // lower-case name
  std::map<std::string, int> rcodes_;                    // names that fail
};

std::unique_ptr<Resolver> make_fake_resolver(asio::io_context& io, std::shared_ptr<FakeDns> table);

}  // namespace mailhook::policyd::dns
