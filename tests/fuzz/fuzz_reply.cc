// libFuzzer target: the reply validator. Whatever it accepts is valid,
// goes on the wire with CRLF only as line ends, and parses back the same.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mailcore/smtp/reply_text.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mailhook::smtp;
  const ParsedReply p = parse_reply(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!p.reply) return 0;
  if (validate(*p.reply) != ReplyError::None) __builtin_trap();
  const std::string wire = p.reply->wire();
  for (std::size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\n' && (i == 0 || wire[i - 1] != '\r')) __builtin_trap();
    if (wire[i] == '\r' && (i + 1 >= wire.size() || wire[i + 1] != '\n')) __builtin_trap();
  }
  const ParsedReply again = parse_reply(wire);
  if (!again.reply || !(*again.reply == *p.reply)) __builtin_trap();
  return 0;
}
