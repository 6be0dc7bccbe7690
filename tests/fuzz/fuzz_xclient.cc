// libFuzzer target: XCLIENT attribute parsing and xtext decoding
// (frontend/server/xclient.cc, pure). Whatever the bytes, an accepted
// XCLIENT leaves no control character in any client fact or the HELO
// name (issue 19 finding 10), and a refused one changes nothing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "frontend/server/client_address.h"
#include "frontend/server/xclient.h"
#include "mailcore/smtp/xtext.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mailhook;
  const std::string in(reinterpret_cast<const char*>(data), size);
  ClientFacts facts;
  facts.host = "before";
  std::string helo = "before";
  bool esmtp = true;
  const std::string error = front::apply_xclient(in, facts, helo, esmtp);
  if (error.empty()) {
    for (const std::string* v : {&facts.host, &facts.address, &facts.local_address, &facts.auth_user, &helo}) {
      if (smtp::has_control(*v)) __builtin_trap();
    }
    if (!facts.address.empty() && !front::address_bytes(facts.address)) __builtin_trap();
  } else if (facts.host != "before" || helo != "before" || !esmtp) {
    __builtin_trap();
  }
  (void)smtp::xtext_decode(in);
  (void)smtp::is_valid_envid(in);
  (void)smtp::is_valid_orcpt(in);
  (void)front::connection_limit_key(in, static_cast<unsigned>(size % 129));
  std::string cidr_error;
  if (auto list = front::CidrList::parse(in, cidr_error)) (void)list->contains("2001:db8::1");
  return 0;
}
