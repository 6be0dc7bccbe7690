// RFC 6376 3.2 tag-list parsing (tag_list.h).
//   tag-list  =  tag-spec *( ";" tag-spec ) [ ";" ]
//   tag-spec  =  [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
//   tag-value =  [ tval *( 1*(WSP / FWS) tval ) ], tval = 1*VALCHAR
//   VALCHAR   =  %x21-3A / %x3C-7E
// Bytes >= 0x80 are taken as VALCHAR too: key records carry UTF-8 notes
// (n=) in the wild, and they change no other tag.
#include "policyd/dkim/tag_list.h"

namespace mailhook::policyd::dkim {
namespace {

bool alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool digit(char c) { return c >= '0' && c <= '9'; }
bool valchar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 0x21 && u <= 0x7e && c != ';') || u >= 0x80;
}

}  // namespace

std::optional<std::vector<Tag>> parse_tag_list(std::string_view text, std::string& error) {
  std::vector<Tag> tags;
  std::size_t i = 0;
  const std::size_t n = text.size();
  auto skip_fws = [&] {
    while (i < n && is_fws(text[i])) ++i;
  };
  while (true) {
    skip_fws();
    if (i == n) break;  // empty list, or the optional ';' at the end
    const std::size_t name_begin = i;
    if (!alpha(text[i])) {
      error = "tag name expected at offset " + std::to_string(i);
      return std::nullopt;
    }
    while (i < n && (alpha(text[i]) || digit(text[i]) || text[i] == '_')) ++i;
    Tag tag;
    tag.name.assign(text.substr(name_begin, i - name_begin));
    skip_fws();
    if (i == n || text[i] != '=') {
      error = "'=' expected after tag " + tag.name;
      return std::nullopt;
    }
    ++i;
    tag.value_begin = i;
    std::size_t first = std::string_view::npos, last = 0;
    while (i < n && text[i] != ';') {
      if (valchar(text[i])) {
        if (first == std::string_view::npos) first = i;
        last = i + 1;
      } else if (!is_fws(text[i])) {
        error = "a control byte in the value of tag " + tag.name;
        return std::nullopt;
      }
      ++i;
    }
    tag.value_end = i;
    if (first != std::string_view::npos) tag.value.assign(text.substr(first, last - first));
    if (find_tag(tags, tag.name) != nullptr) {
      error = "tag " + tag.name + " appears twice";
      return std::nullopt;
    }
    tags.push_back(std::move(tag));
    if (i == n) break;
    ++i;  // ';'
  }
  return tags;
}

const Tag* find_tag(const std::vector<Tag>& tags, std::string_view name) {
  for (const auto& t : tags) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string without_whitespace(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (!is_fws(c)) out += c;
  }
  return out;
}

}  // namespace mailhook::policyd::dkim
