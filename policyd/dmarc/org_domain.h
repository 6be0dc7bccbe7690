// Organizational Domains (RFC 7489 3.2) from the Public Suffix List, read
// by libpsl from the system's list (Debian `publicsuffix`), libpsl's
// built-in copy when that is missing. Thread-safe: one immutable list,
// loaded on first use. Never touches DNS or Lua.
#pragma once

#include <string>
#include <string_view>

namespace mailhook::policyd::dmarc {

// The public suffix plus one label of `domain` ("mail.example.co.uk" ->
// "example.co.uk"); a public suffix itself is its own Organizational
// Domain. `domain` is lower-cased and a trailing dot dropped first.
std::string org_domain(std::string_view domain);

// Lower case, no trailing dot: the form every DMARC comparison uses.
std::string normalize_domain(std::string_view domain);

}  // namespace mailhook::policyd::dmarc
