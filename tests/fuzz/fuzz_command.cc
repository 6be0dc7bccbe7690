// libFuzzer target: the SMTP command parser must take any bytes, and an
// accepted MAIL/RCPT address never carries a line end or angle bracket.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mailcore/smtp/command.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mailhook::smtp;
  const Command c = parse_command(std::string_view(reinterpret_cast<const char*>(data), size));
  (void)parse_error_reply(c);
  if (c.error == ParseError::None && (c.verb == Verb::Mail || c.verb == Verb::Rcpt)) {
    for (char ch : c.address) {
      if (ch == '\r' || ch == '\n' || ch == '<' || ch == '>' || ch == '\0') __builtin_trap();
    }
  }
  return 0;
}
