// SPF macro-strings: see macro.h.
#include "policyd/spf/macro.h"

#include <algorithm>

namespace mailhook::policyd::spf {
namespace {

constexpr std::string_view kLetters = "slodiphcrtv";
constexpr std::string_view kExplainOnly = "crt";          // RFC 7208 7.2
constexpr std::string_view kDelimiters = ".-+,/_=";      // RFC 7208 7.1
// A DIGIT transformer keeps at most this many parts: no value has more
// (a name is at most 255 octets, an IPv6 address 32 nibbles).
constexpr unsigned kMaxKeep = 255;

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// RFC 7208 7.1 macro-literal: %x21-24 / %x26-7E.
bool is_literal(char c) { return c >= 0x21 && c <= 0x7e && c != '%'; }

void add_literal(MacroString& m, std::string_view text) {
  if (m.tokens.empty() || m.tokens.back().kind != MacroToken::Kind::Literal) m.tokens.emplace_back();
  m.tokens.back().literal.append(text);
}

}  // namespace

std::optional<MacroString> tokenize(std::string_view text, bool explain, std::string& error) {
  MacroString m;
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == ' ' && explain) {
      add_literal(m, " ");
      m.ends_with_expand = false;
      ++i;
      continue;
    }
    if (c != '%') {
      if (!is_literal(c)) {
        error = "a character not allowed in a macro-string";
        return std::nullopt;
      }
      add_literal(m, text.substr(i, 1));
      m.ends_with_expand = false;
      ++i;
      continue;
    }
    if (i + 1 >= text.size()) {
      error = "a '%' at the end of a macro-string";
      return std::nullopt;
    }
    const char next = text[i + 1];
    if (next == '%' || next == '_' || next == '-') {
      add_literal(m, next == '%' ? "%" : next == '_' ? " " : "%20");
      m.ends_with_expand = true;
      i += 2;
      continue;
    }
    if (next != '{') {
      error = "a '%' not followed by '{', '%', '_' or '-'";
      return std::nullopt;
    }
    const std::size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      error = "a macro without its '}'";
      return std::nullopt;
    }
    const std::string_view body = text.substr(i + 2, close - i - 2);
    if (body.empty() || kLetters.find(lower(body[0])) == std::string_view::npos) {
      error = "an unknown macro letter";
      return std::nullopt;
    }
    MacroToken t;
    t.kind = MacroToken::Kind::Letter;
    t.letter = lower(body[0]);
    t.url_escape = body[0] != t.letter;
    if (!explain && kExplainOnly.find(t.letter) != std::string_view::npos) {
      error = "macro letters c, r and t are for exp= text only";
      return std::nullopt;
    }
    std::size_t j = 1;
    bool digits = false;
    unsigned keep = 0;
    while (j < body.size() && body[j] >= '0' && body[j] <= '9') {
      digits = true;
      keep = std::min(kMaxKeep, keep * 10 + static_cast<unsigned>(body[j] - '0'));
      ++j;
    }
    if (digits && keep == 0) {
      error = "a macro keeps zero parts";  // RFC 7208 7.1: the DIGIT must be nonzero
      return std::nullopt;
    }
    t.keep = keep;
    if (j < body.size() && lower(body[j]) == 'r') {
      t.reverse = true;
      ++j;
    }
    for (; j < body.size(); ++j) {
      if (kDelimiters.find(body[j]) == std::string_view::npos) {
        error = "a macro with an unknown transformer or delimiter";
        return std::nullopt;
      }
      t.delimiters += body[j];
    }
    m.tokens.push_back(std::move(t));
    m.ends_with_expand = true;
    i = close + 1;
  }
  return m;
}

std::string url_escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string letter_value(char letter, const MacroFacts& f) {
  switch (letter) {
    case 's': return std::string(f.sender);
    case 'l': return std::string(f.local_part);
    case 'o': return std::string(f.sender_domain);
    case 'd': return std::string(f.domain);
    case 'h': return std::string(f.helo);
    case 'r': return f.receiver.empty() ? "unknown" : std::string(f.receiver);
    case 't': return std::to_string(f.now);
    case 'v': return f.ip && !f.ip->v4 ? "ip6" : "in-addr";
    case 'c': return f.ip ? f.ip->text() : "";
    case 'p': return f.validated_name ? f.validated_name() : "unknown";
    case 'i': {
      if (!f.ip) return "";
      if (f.ip->v4) return f.ip->text();
      // RFC 7208 7.3: IPv6 "i" is dot-format, one nibble per part.
      static constexpr char kHex[] = "0123456789abcdef";
      std::string out;
      for (std::uint8_t b : f.ip->bytes) {
        if (!out.empty()) out += '.';
        out += kHex[b >> 4];
        out += '.';
        out += kHex[b & 15];
      }
      return out;
    }
    default: return "";
  }
}

std::string expand(const MacroString& m, const MacroFacts& facts) {
  std::string out;
  for (const MacroToken& t : m.tokens) {
    if (t.kind == MacroToken::Kind::Literal) {
      out += t.literal;
      continue;
    }
    // RFC 7208 7.3: split on the delimiters, reverse if asked, keep the
    // right-most `keep` parts, join with ".".
    const std::string value = letter_value(t.letter, facts);
    const std::string_view delims = t.delimiters.empty() ? std::string_view(".") : std::string_view(t.delimiters);
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    for (std::size_t k = 0; k <= value.size(); ++k) {
      if (k == value.size() || delims.find(value[k]) != std::string_view::npos) {
        parts.push_back(std::string_view(value).substr(start, k - start));
        start = k + 1;
      }
    }
    if (t.reverse) std::reverse(parts.begin(), parts.end());
    const std::size_t from = t.keep != 0 && t.keep < parts.size() ? parts.size() - t.keep : 0;
    std::string joined;
    for (std::size_t k = from; k < parts.size(); ++k) {
      if (k > from) joined += '.';
      joined += parts[k];
    }
    out += t.url_escape ? url_escape(joined) : joined;
  }
  return out;
}

}  // namespace mailhook::policyd::spf
