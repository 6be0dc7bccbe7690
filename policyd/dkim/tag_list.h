// The tag=value lists of DKIM (RFC 6376 3.2): the DKIM-Signature header
// field and the key records in DNS both use them. Pure: bytes in, tags
// out, with the offsets of each value so the verifier can blank b= in
// the raw header. Never allocates more than its input; never throws.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailhook::policyd::dkim {

struct Tag {
  std::string name;
  std::string value;             // without surrounding whitespace (FWS inside kept)
  std::size_t value_begin = 0;   // in the input: just after '='
  std::size_t value_end = 0;     // in the input: the ';' that ends it, or the end
};

// Parses `text`; nullopt and `error` when it is not a tag-list: a tag
// name that is not ALPHA *(ALPHA / DIGIT / "_"), a missing '=', a control
// or ';' byte in a value, or a tag that appears twice (RFC 6376 3.2: "Tags
// with duplicate names MUST NOT occur").
std::optional<std::vector<Tag>> parse_tag_list(std::string_view text, std::string& error);

// The value of `name`, or nullptr.
const Tag* find_tag(const std::vector<Tag>& tags, std::string_view name);

// A value with every whitespace byte (FWS) removed: b=, bh=, p= (RFC 6376 3.5).
std::string without_whitespace(std::string_view value);

// RFC 6376 2.8 WSP / FWS bytes; CR and LF occur only as part of folding.
constexpr bool is_fws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace mailhook::policyd::dkim
