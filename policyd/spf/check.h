// check_host() of RFC 7208 as a pure state machine over an abstract
// resolver: run() evaluates with the DNS answers known so far and either
// ends with an Outcome or stops at the questions it needs next; the
// caller asks DNS however it likes (the worker's c-ares channel, a zone
// in memory, a fuzzer) and hands each answer in with answer(). The
// evaluation is deterministic, so each run() replays the same steps from
// the start and goes one step further: no thread, no socket, no clock
// (the %{t} time comes in the Request). Never blocks, never throws.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailcore/net/cidr.h"
#include "policyd/spf/record.h"

namespace mailhook::policyd::spf {

enum class Result : std::uint8_t {
  None,       // no record, or no valid domain to check (RFC 7208 2.6.1)
  Neutral,    // "?" matched, or nothing matched
  Pass,       // "+"
  Fail,       // "-"
  SoftFail,   // "~"
  TempError,  // a DNS failure (SERVFAIL, timeout, ...)
  PermError,  // a broken record or a limit passed
};
std::string_view result_name(Result r);

// The RR types check_host asks for.
enum class RrType : std::uint16_t { A = 1, Ptr = 12, Mx = 15, Txt = 16, Aaaa = 28 };

struct Question {
  std::string name;  // lower case, no final dot
  RrType type = RrType::Txt;
  friend auto operator<=>(const Question&, const Question&) = default;
};

struct DnsAnswer {
  enum class Status : std::uint8_t {
    Records,   // RCODE 0: `values` (possibly none: NODATA)
    NxDomain,  // RCODE 3
    Failure,   // any other RCODE, a timeout, no answer
  };
  Status status = Status::Failure;
  // A/AAAA: addresses as text; MX, PTR: target names; TXT: one string per
  // record, its character-strings joined (RFC 7208 3.3).
  std::vector<std::string> values;
};

struct Request {
  std::string ip;        // the client's address (IPv4-mapped IPv6 is IPv4)
  std::string helo;      // HELO/EHLO name
  std::string sender;    // MAIL FROM without brackets; "" -> postmaster@<helo> (2.4)
  std::string receiver;  // %{r}: this host's name; "" -> "unknown"
  std::int64_t now = 0;  // %{t}
};

// RFC 7208 4.6.4. The defaults are the RFC's.
struct Limits {
  unsigned dns_lookups = 10;   // include, a, mx, ptr, exists, redirect per check
  unsigned void_lookups = 2;   // NXDOMAIN or empty answers of those
  unsigned mx_names = 10;      // MX names per mx mechanism (more: permerror)
  unsigned ptr_names = 10;     // PTR names per ptr / %{p} (the rest ignored)
  std::size_t explanation_bytes = 1024;  // an expanded exp= text is cut there
};

struct Outcome {
  Result result = Result::None;
  std::optional<std::string> explanation;  // fail with a usable exp= (6.2)
  std::optional<std::string> mechanism;    // the matching term as written
  std::string domain;                      // the domain whose record decided
  std::string problem;                     // why permerror/temperror/none, for logs
};

class Check {
 public:
  explicit Check(Request request, Limits limits = {});
  ~Check();
  Check(const Check&) = delete;
  Check& operator=(const Check&) = delete;

  // true: outcome() is final. false: questions() lists what is missing.
  bool run();
  const std::vector<Question>& questions() const { return missing_; }
  void answer(const Question& q, DnsAnswer a);
  const Outcome& outcome() const { return outcome_; }
  const Request& request() const { return request_; }
  std::size_t queries() const { return answers_.size(); }

 private:
  struct Evaluation;
  Request request_;
  Limits limits_;
  std::optional<net::Address> ip_;
  std::map<Question, DnsAnswer> answers_;
  std::vector<Question> missing_;
  std::map<std::string, std::shared_ptr<const std::optional<Record>>> records_;  // parsed, by text
  std::map<std::string, std::string> record_errors_;
  Outcome outcome_;
  bool done_ = false;
};

// The lookup form of a name: lower case, without the final dot.
std::string normal_name(std::string_view name);

}  // namespace mailhook::policyd::spf
