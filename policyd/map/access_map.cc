// Access map parsing and lookup (access_map.h). A line is `key value`
// (value: the rest of the line, trimmed); `#` at the start of a line (after
// blanks) is a comment; a line starting with blanks continues the previous
// value (Postfix's folding, postmap(1)). The first entry for an exact key
// wins, like Postfix's postmap keeps the first.
#include "policyd/map/access_map.h"

#include <algorithm>

namespace mailhook::policyd::map {
namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string lowered(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

// Back-references make glibc's matcher backtrack (exponential time);
// POSIX ERE has none, so a "\1".."\9" is refused rather than honoured.
bool has_back_reference(std::string_view re) {
  for (std::size_t i = 0; i + 1 < re.size(); ++i) {
    if (re[i] == '\\') {
      if (re[i + 1] >= '1' && re[i + 1] <= '9') return true;
      ++i;
    }
  }
  return false;
}

}  // namespace

AccessMap::~AccessMap() {
  for (auto& p : patterns_) regfree(&p->re);
}

std::shared_ptr<const AccessMap> AccessMap::parse(std::string_view text, std::string& error) {
  auto m = std::make_shared<AccessMap>();
  // Logical lines first (a line starting with blanks continues the one
  // before, as postmap(1) reads them), then each entry.
  struct Logical {
    std::size_t line_no;
    std::string text;
  };
  std::vector<Logical> logical;
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.find('\0') != std::string_view::npos) {
      error = "line " + std::to_string(line_no) + ": a NUL byte";
      return nullptr;
    }
    const std::string_view body = trim(line);
    if (body.empty() || body.front() == '#') continue;
    if (blank(line.front())) {
      if (logical.empty()) {
        error = "line " + std::to_string(line_no) + ": a continuation line without an entry before it";
        return nullptr;
      }
      logical.back().text.append(" ").append(body);
      continue;
    }
    logical.push_back({line_no, std::string(body)});
  }
  std::vector<std::string> keys, values;
  std::vector<std::size_t> line_of;
  for (const Logical& l : logical) {
    const std::string_view body = l.text;
    // A /regex/ key may contain blanks: it ends at the first "/" before a blank.
    std::size_t key_end = 0;
    if (body.front() == '/') {
      std::size_t close = std::string_view::npos;
      for (std::size_t i = 1; i < body.size(); ++i) {
        if (body[i] == '\\') {
          ++i;
        } else if (body[i] == '/' && (i + 1 == body.size() || blank(body[i + 1]))) {
          close = i;
          break;
        }
      }
      if (close == std::string_view::npos) {
        error = "line " + std::to_string(l.line_no) + ": a /pattern/ without its closing /";
        return nullptr;
      }
      key_end = close + 1;
    } else {
      while (key_end < body.size() && !blank(body[key_end])) ++key_end;
    }
    const std::string_view value = trim(body.substr(key_end));
    if (value.empty()) {
      error = "line " + std::to_string(l.line_no) + ": a key without a value";
      return nullptr;
    }
    keys.emplace_back(body.substr(0, key_end));
    values.emplace_back(value);
    line_of.push_back(l.line_no);
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string& key = keys[i];
    Entry e{key, values[i]};
    const std::string where = "line " + std::to_string(line_of[i]) + ": ";
    if (key.size() >= 2 && key.front() == '/' && key.back() == '/') {
      const std::string re = key.substr(1, key.size() - 2);
      if (re.empty() || has_back_reference(re)) {
        error = where + (re.empty() ? "an empty pattern" : "a back-reference (not POSIX ERE; refused)");
        return nullptr;
      }
      auto p = std::make_unique<Pattern>();
      // Postfix regexp tables match case-insensitively by default.
      const int rc = regcomp(&p->re, re.c_str(), REG_EXTENDED | REG_ICASE | REG_NOSUB);
      if (rc != 0) {
        char why[128];
        regerror(rc, &p->re, why, sizeof why);
        error = where + "bad pattern: " + why;
        return nullptr;
      }
      p->entry = std::move(e);
      m->patterns_.push_back(std::move(p));
    } else if (key.find('/') != std::string::npos) {
      std::string why;
      const std::optional<net::Cidr> network = net::Cidr::parse(key, why);
      if (!network) {
        error = where + "not a CIDR network (address/length): " + why;
        return nullptr;
      }
      m->networks_.push_back({*network, std::move(e)});
    } else if (const std::optional<net::Address> ip = net::parse_address(key)) {
      m->exact_.try_emplace(ip->text(), std::move(e));  // one spelling per address
    } else {
      m->exact_.try_emplace(lowered(key), std::move(e));
    }
  }
  return m;
}

std::optional<Match> AccessMap::exact(const std::string& lowered_key) const {
  const auto it = exact_.find(lowered_key);
  if (it == exact_.end()) return std::nullopt;
  return Match{it->second.value, it->second.key};
}

std::optional<Match> AccessMap::lookup(std::string_view key) const {
  if (key.empty()) key = "<>";
  const std::string k = lowered(key);
  if (const std::optional<net::Address> ip = net::parse_address(k)) {
    std::string text = ip->text();
    if (auto m = exact(text)) return m;
    // Postfix access(5) "CLIENT HOSTNAME/ADDRESS PATTERNS": drop the last
    // octet (IPv4) or group (IPv6) while something is left.
    const char sep = ip->v4 ? '.' : ':';
    for (std::size_t cut = text.rfind(sep); cut != std::string::npos && cut > 0; cut = text.rfind(sep)) {
      text.resize(cut);
      while (!text.empty() && text.back() == sep) text.pop_back();  // "2001:db8::" -> "2001:db8"
      if (text.empty()) break;
      if (auto m = exact(text)) return m;
    }
    for (const NetworkEntry& n : networks_) {
      if (n.network.contains(*ip)) return Match{n.entry.value, n.entry.key};
    }
  } else {
    const std::size_t at = k.rfind('@');
    if (auto m = exact(k)) return m;
    std::string_view domain = at == std::string::npos ? std::string_view(k) : std::string_view(k).substr(at + 1);
    if (at != std::string::npos && !domain.empty()) {
      if (auto m = exact(std::string(domain))) return m;
    }
    // Parent domains: "a.b.example.com" -> "b.example.com", "example.com", "com".
    for (std::size_t dot = domain.find('.'); dot != std::string_view::npos; dot = domain.find('.')) {
      domain.remove_prefix(dot + 1);
      if (domain.empty()) break;
      if (auto m = exact(std::string(domain))) return m;
    }
    if (at != std::string::npos) {
      if (auto m = exact(k.substr(0, at + 1))) return m;  // "user@"
    }
  }
  if (!patterns_.empty()) {
    const std::string subject(key);
    for (const auto& p : patterns_) {
      if (regexec(&p->re, subject.c_str(), 0, nullptr, 0) == 0) return Match{p->entry.value, p->entry.key};
    }
  }
  return std::nullopt;
}

}  // namespace mailhook::policyd::map
