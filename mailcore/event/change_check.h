// The one checker of message changes (ARCHITECTURE pattern 3): policyd's
// `message` module refuses a bad argument with it, and the front checks
// every change that arrives from policyd with it before touching a
// message, so no header or envelope injection gets through either side.
// Pure.
#pragma once

#include <string_view>

#include "mailcore/event/event.h"

namespace mailhook {

enum class ChangeError : std::uint8_t {
  None,
  HeaderName,   // RFC 5322 2.2: 1*ftext, printable US-ASCII except ":"
  HeaderValue,  // NUL, or a line end that is not CRLF followed by whitespace
  Address,      // CR, LF, NUL, "<" or ">" in an address
  Arguments,    // ESMTP arguments must be printable US-ASCII
  Text,         // a quarantine reason with CR, LF or NUL
};

bool valid_header_name(std::string_view name);
bool valid_header_value(std::string_view value);
bool valid_address(std::string_view address);
bool valid_esmtp_arguments(std::string_view args);

ChangeError check_change(const MessageChange& change);
std::string_view change_error_text(ChangeError e);

}  // namespace mailhook
