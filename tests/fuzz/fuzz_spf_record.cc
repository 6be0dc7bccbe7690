// libFuzzer target: the SPF record parser and macro expander
// (policyd/spf, pure), and check_host() over a record from the fuzzer.
// Whatever the bytes: the parser and tokenizer return or refuse without
// reading past the input; an expansion stays within what its tokens can
// make; a whole check, with the record published at every name it asks
// for (so include and redirect loop onto it), ends in a bounded number of
// rounds and questions with a result, and an explanation within its limit.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "policyd/spf/check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mailhook::policyd::spf;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string error;
  (void)parse_record(in, error);
  const mailhook::net::Address ip = *mailhook::net::parse_address(size % 2 ? "192.0.2.1" : "2001:db8::1");
  MacroFacts facts;
  facts.sender = "user@fuzz.example";
  facts.local_part = "user";
  facts.sender_domain = facts.domain = "fuzz.example";
  facts.helo = "helo.example";
  facts.ip = &ip;
  facts.validated_name = [] { return std::string("ptr.fuzz.example"); };
  for (bool explain : {false, true}) {
    if (auto m = tokenize(in, explain, error)) {
      // A letter's value is at most 128 octets here (IPv6 nibbles: 63, URL-escaped x3).
      if (expand(*m, facts).size() > 3 * 128 * (in.size() / 4 + 1) + in.size() * 3) __builtin_trap();
    } else if (error.empty()) {
      __builtin_trap();
    }
  }

  const std::string record = "v=spf1 " + std::string(in);
  Request r;
  r.ip = ip.text();
  r.sender = "user@fuzz.example";
  r.helo = "helo.example";
  Check check(r);
  int rounds = 0;
  while (!check.run()) {
    if (++rounds > 400 || check.questions().empty()) __builtin_trap();
    for (const Question q : check.questions()) {
      DnsAnswer a;
      a.status = DnsAnswer::Status::Records;
      switch (q.type) {
        case RrType::Txt: a.values = {record}; break;
        case RrType::A: a.values = {"192.0.2.1"}; break;
        case RrType::Aaaa: a.values = {"2001:db8::1"}; break;
        case RrType::Mx: a.values = {"mx.fuzz.example"}; break;
        case RrType::Ptr: a.values = {"ptr.fuzz.example"}; break;
      }
      if (q.name.size() % 7 == 0) a.status = DnsAnswer::Status::NxDomain;
      check.answer(q, a);
    }
  }
  if (check.queries() > 400) __builtin_trap();
  if (check.outcome().explanation && check.outcome().explanation->size() > Limits{}.explanation_bytes) __builtin_trap();
  (void)result_name(check.outcome().result);
  return 0;
}
