// xtext (RFC 3461 4): the encoding of DSN parameters (ENVID, ORCPT) and of
// XCLIENT attribute values. Pure functions over bytes; never allocate
// beyond the result, never throw.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mailhook::smtp {

// RFC 3461 4.4: an ENVID is at most 100 characters (of its xtext).
inline constexpr std::size_t kMaxEnvid = 100;
// RFC 3461 4.2: an ORCPT ("addr-type;xtext") is at most 500 characters.
inline constexpr std::size_t kMaxOrcpt = 500;

// Strict RFC 3461 4 xtext: xchar ("!".."~" except "+" and "=") or "+"
// with two upper-case hex digits.
bool is_xtext(std::string_view s);

// Decodes "+XX" (either case of hex digits, as Postfix writes and reads);
// nullopt for a "+" without two hex digits.
std::optional<std::string> xtext_decode(std::string_view s);

// ENVID=value (RFC 3461 4.4) and ORCPT=addr-type;xtext (RFC 3461 4.2):
// well-formed and within length; nothing else may go on to a smart host.
bool is_valid_envid(std::string_view value);
bool is_valid_orcpt(std::string_view value);

// True if `s` holds a C0 control character (CR, LF, NUL, ...) or DEL:
// such a value must not reach an envelope, a header or a reply.
bool has_control(std::string_view s);

}  // namespace mailhook::smtp
