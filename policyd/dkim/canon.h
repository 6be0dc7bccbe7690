// DKIM canonicalization (RFC 6376 3.4) and the split of a message into
// header fields and body that it works on. Pure functions over bytes: no
// crypto, no I/O. Linear in the input whatever it holds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mailhook::policyd::dkim {

enum class Canon : std::uint8_t {
  Simple,   // RFC 6376 3.4.1 / 3.4.3: (almost) as is
  Relaxed,  // RFC 6376 3.4.2 / 3.4.4: whitespace and case folded
};

// One header field as it stands in the message.
struct HeaderField {
  std::string_view name;  // as written, before the ':'
  std::string_view raw;   // the whole field, folding included, without the final CRLF
};

struct SplitMessage {
  std::vector<HeaderField> fields;  // top to bottom
  std::string_view body;            // after the empty line; empty when there is none
};

// Splits a CRLF message at its first empty line (RFC 5322 2.1). A line
// without ':' in the header is kept with an empty name (it can be signed
// by nothing); a line starting with WSP continues the field above.
SplitMessage split_message(std::string_view message);

// Lines ending in a bare LF get a CR, so a message stored with LF line
// ends canonicalizes like its wire form (RFC 6376 5.3: CRLF is the
// canonical line end).
std::string with_crlf(std::string_view message);

// RFC 6376 3.4.1 / 3.4.2: the field as hashed, ending in CRLF.
std::string canonical_header(const HeaderField& field, Canon c);

// RFC 6376 3.4.3 / 3.4.4: the body as hashed. Simple: trailing empty
// lines removed, an empty body is one CRLF. Relaxed: WSP runs become one
// SP, WSP at line ends and trailing empty lines removed; empty stays empty.
// A last line without CRLF is ended with one.
std::string canonical_body(std::string_view body, Canon c);

// ASCII lower case, for the names in h= (compared without case, RFC 6376 3.5).
std::string lower(std::string_view s);

// A field's name as h= names it: lower case, without WSP before the colon.
std::string field_key(const HeaderField& f);

}  // namespace mailhook::policyd::dkim
