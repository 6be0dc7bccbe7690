// The SMTP session's limits and their defaults: the one place they are
// declared. The front's --max-message-size / --max-recipients flags,
// --test's replays (policyd/testing/case_runner.cc) and the milter's
// --milter-max-message-size take them from here. Plain data; never
// includes anything of the session machine.
#pragma once

#include <cstdint>

namespace mailhook::session {

// 0 lifts a limit.
struct Limits {
  std::uint64_t max_message_size = 26214400;  // 25 MiB, the message's bytes as sent (RFC 1870 SIZE)
  std::uint32_t max_recipients = 100;         // per transaction (RFC 5321 4.5.3.1.8: at least 100)
  std::uint32_t max_line_length = 0;  // message lines, CRLF included (commands: RFC 5321's 512)
};

}  // namespace mailhook::session
