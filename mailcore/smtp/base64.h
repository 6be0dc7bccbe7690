// RFC 4648 base64, as SMTP AUTH (RFC 4954) uses it. Pure functions; a
// malformed input is nullopt, never a partial result.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mailhook::smtp {

std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);

}  // namespace mailhook::smtp
