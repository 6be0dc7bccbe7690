// FakeDns / FakeResolver: see the header.
#include "policyd/dns/fake_resolver.h"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace mailhook::policyd::dns {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  while (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

int type_of(const std::string& name) {
  for (int t : {kA, kNS, kCNAME, kSOA, kPTR, kMX, kTXT, kAAAA, kDNAME}) {
    if (type_name(t) == name) return t;
  }
  return 0;
}

class FakeResolver final : public Resolver {
 public:
  FakeResolver(asio::io_context& io, std::shared_ptr<FakeDns> table) : io_(io), table_(std::move(table)) {}
  void query(std::string_view name, int, int type, Callback done) override {
    ++in_flight_;
    asio::post(io_, [this, a = table_->answer(name, type), done = std::move(done)]() mutable {
      --in_flight_;
      done(std::move(a));
    });
  }
  std::optional<Answer> cached(std::string_view, int, int) override { return std::nullopt; }
  std::size_t in_flight() const override { return in_flight_; }

 private:
  asio::io_context& io_;
  std::shared_ptr<FakeDns> table_;
  std::size_t in_flight_ = 0;
};

}  // namespace

bool FakeDns::add(const std::string& line, std::string& error) {
  std::istringstream in(line);
  std::string name, kind;
  in >> name >> kind;
  if (name.empty() || kind.empty()) {
    error = "expected: NAME TYPE VALUE, or NAME NXDOMAIN|SERVFAIL|REFUSED|TIMEOUT";
    return false;
  }
  std::transform(kind.begin(), kind.end(), kind.begin(), [](unsigned char c) { return std::toupper(c); });
  std::lock_guard l(mu_);
  const std::string key = lower(name);
  if (kind == "NXDOMAIN" || kind == "SERVFAIL" || kind == "REFUSED" || kind == "TIMEOUT") {
    rcodes_[key] = kind == "NXDOMAIN" ? kNxDomain : kind == "SERVFAIL" ? kServFail : kind == "REFUSED" ? kRefused : kTimeout;
    return true;
  }
  Record r;
  r.owner = key;
  r.type = static_cast<std::uint16_t>(type_of(kind));
  r.rclass = kIN;
  r.ttl = 300;
  std::string rest;
  std::getline(in >> std::ws, rest);
  switch (r.type) {
    case kA:
    case kAAAA: r.address = rest; break;
    case kMX: {
      std::istringstream mx(rest);
      int pref = -1;
      mx >> pref >> r.host;
      if (pref < 0 || r.host.empty()) {
        error = "MX needs a preference and a host";
        return false;
      }
      r.preference = static_cast<std::uint16_t>(pref);
      break;
    }
    case kTXT: r.strings = {rest}; break;
    case kPTR:
      r.host = lower(rest);
      r.address = address_of_reverse_name(key);
      if (r.address.empty()) r.address = key;
      break;
    case kCNAME:
    case kDNAME:
    case kNS: r.host = lower(rest); break;
    default:
      error = "unknown DNS type " + kind + " (A, AAAA, MX, TXT, PTR, CNAME, DNAME, NS, or NXDOMAIN, SERVFAIL, "
              "REFUSED, TIMEOUT)";
      return false;
  }
  if (rest.empty()) {
    error = kind + " needs a value";
    return false;
  }
  records_[key].push_back(std::move(r));
  return true;
}

void FakeDns::clear() {
  std::lock_guard l(mu_);
  records_.clear();
  rcodes_.clear();
}

Answer FakeDns::answer(std::string_view name, int type) const {
  std::lock_guard l(mu_);
  Answer a;
  const std::string key = lower(std::string(name));
  if (auto it = rcodes_.find(key); it != rcodes_.end()) {
    a.rcode = it->second;
    if (a.rcode == kTimeout) a.error = "fake timeout";
    return a;
  }
  auto it = records_.find(key);
  a.rcode = it == records_.end() ? kNxDomain : kNoError;
  a.message.rcode = a.rcode;
  if (it != records_.end()) {
    for (const Record& r : it->second) {
      if (r.type == type || type == kANY || r.type == kCNAME) a.message.answer.push_back(r);
    }
  }
  return a;
}

std::unique_ptr<Resolver> make_fake_resolver(asio::io_context& io, std::shared_ptr<FakeDns> table) {
  return std::make_unique<FakeResolver>(io, std::move(table));
}

}  // namespace mailhook::policyd::dns
