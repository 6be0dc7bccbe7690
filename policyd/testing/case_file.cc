// Reading case files (the format of docs/policy-tests.md): one pass over
// the lines, every error naming file and line. Knows nothing of SMTP.
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

#include "policyd/dns/fake_resolver.h"
#include "policyd/testing/case_runner.h"

namespace mailhook::policyd::testing {
namespace {

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r");
  const auto e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// `client: 192.0.2.1 host=mail.example.net port=4321`
bool parse_client(const std::string& text, Case& c, std::string& error) {
  std::istringstream in(text);
  std::string word;
  bool first = true;
  while (in >> word) {
    if (first && word.find('=') == std::string::npos) {
      c.client_address = word;
    } else if (word.rfind("host=", 0) == 0) {
      c.client_host = word.substr(5);
    } else if (word.rfind("port=", 0) == 0) {
      c.client_port = static_cast<std::uint32_t>(std::atoi(word.c_str() + 5));
    } else {
      error = "client: expected ADDRESS [host=NAME] [port=N], got \"" + word + "\"";
      return false;
    }
    first = false;
  }
  return true;
}

// `clock: 2026-12-01T10:00:00Z` (UTC only: a case must not depend on the
// machine's time zone).
bool parse_clock(const std::string& text, std::int64_t& out) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  char z = 0;
  int used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &y, &mo, &d, &h, &mi, &s, &z, &used) != 7 ||
      z != 'Z' || used != static_cast<int>(text.size()) || text.size() != 20 || y < 1970) {
    return false;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  const std::time_t t = timegm(&tm);
  // timegm normalises 2026-02-30 to March: a date that does not round-trip is no date.
  std::tm back{};
  if (t == static_cast<std::time_t>(-1) || gmtime_r(&t, &back) == nullptr || back.tm_year != y - 1900 ||
      back.tm_mon != mo - 1 || back.tm_mday != d || back.tm_hour != h || back.tm_min != mi || back.tm_sec != s) {
    return false;
  }
  out = static_cast<std::int64_t>(t);
  return true;
}

// `advance: 90` / `90s` / `5m` / `2h` / `36d`: a positive amount, at most
// ten years (a typo must not wrap the clock).
bool parse_duration(const std::string& text, std::int64_t& out) {
  std::size_t i = 0;
  std::int64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i < 10) n = n * 10 + (text[i++] - '0');
  if (i == 0) return false;
  std::int64_t unit = 1;
  if (i + 1 == text.size()) {
    switch (text[i]) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      default: return false;
    }
  } else if (i != text.size()) {
    return false;
  }
  out = n * unit;
  return out > 0 && out <= 10LL * 366 * 86400;
}

}  // namespace

bool parse_case_file(const std::filesystem::path& path, CaseFile& out, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = path.string() + ": cannot read";
    return false;
  }
  out.path = path;
  const std::string name = path.string();
  std::string raw;
  int n = 0;
  Case* current = nullptr;
  bool clock_set = false;  // a `clock:` line came before (`advance:` needs one)
  std::string block;      // an inline message being read
  int block_line = 0;
  auto fail = [&](int line, const std::string& what) {
    error = name + ":" + std::to_string(line) + ": " + what;
    return false;
  };
  auto end_block = [&] {
    if (block_line != 0) {
      current->steps.push_back({Step::Kind::Message, block_line, block});
      block.clear();
      block_line = 0;
    }
  };
  while (std::getline(in, raw)) {
    ++n;
    if (!raw.empty() && raw.back() == '\r') raw.pop_back();
    if (block_line != 0 && !raw.empty() && raw[0] == '|') {
      block += raw.substr(raw.size() > 1 && raw[1] == ' ' ? 2 : 1) + "\r\n";
      continue;
    }
    if (current) end_block();
    const std::string line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) return fail(n, "expected \"keyword: value\" (case, client, dns, send, expect, "
                                                   "expect-line, expect-no-line, message, change, changes, connect, clock, "
                                                   "advance, "
                                                   "script, env, lua-read-dir)");
    const std::string key = line.substr(0, colon);
    const std::string value = trim(line.substr(colon + 1));
    if (key == "script" || key == "env" || key == "lua-read-dir") {
      if (current) return fail(n, key + ": belongs before the first case");
      if (key == "script") {
        out.scripts.push_back(path.parent_path() / value);
      } else if (key == "lua-read-dir") {
        out.read_dirs.push_back(path.parent_path() / value);
      } else {
        const auto eq = value.find('=');
        if (eq == std::string::npos) return fail(n, "env: expected NAME=value");
        // $CASE_DIR: the directory of the case file (for paths in values).
        std::string v = value.substr(eq + 1);
        for (auto at = v.find("$CASE_DIR"); at != std::string::npos; at = v.find("$CASE_DIR")) {
          v.replace(at, 9, path.parent_path().string());
        }
        out.env.emplace_back(value.substr(0, eq), v);
      }
      continue;
    }
    if (key == "case") {
      out.cases.push_back(Case{.file = name, .line = n, .name = value});
      current = &out.cases.back();
      continue;
    }
    if (!current) return fail(n, key + ": before the first \"case:\" line");
    if (key == "client") {
      std::string why;
      if (!parse_client(value, *current, why)) return fail(n, why);
    } else if (key == "dns") {
      dns::FakeDns probe;
      std::string why;
      if (!probe.add(value, why)) return fail(n, "dns: " + why);
      current->dns.push_back(value);
    } else if (key == "send") {
      if (value.empty()) return fail(n, "send: needs a command line");
      current->steps.push_back({Step::Kind::Send, n, value});
    } else if (key == "expect-line") {
      if (value.empty()) return fail(n, "expect-line: needs a pattern");
      current->steps.push_back({Step::Kind::ExpectLine, n, value});
    } else if (key == "expect-no-line") {
      if (value.empty()) return fail(n, "expect-no-line: needs a pattern");
      current->steps.push_back({Step::Kind::ExpectNoLine, n, value});
    } else if (key == "expect" || key == "connect") {
      if (value.empty()) return fail(n, key + ": needs a reply code or pattern");
      current->steps.push_back({key == "expect" ? Step::Kind::Expect : Step::Kind::Connect, n, value});
    } else if (key == "message") {
      if (value.empty()) {
        block_line = n;  // "| " lines follow
      } else {
        std::ifstream m(path.parent_path() / value, std::ios::binary);
        if (!m) return fail(n, "message: cannot read " + (path.parent_path() / value).string());
        std::string text((std::istreambuf_iterator<char>(m)), std::istreambuf_iterator<char>());
        std::string crlf;  // the file may have LF line ends
        for (std::size_t i = 0; i < text.size(); ++i) {
          if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) crlf += '\r';
          crlf += text[i];
        }
        if (!crlf.empty() && crlf.back() != '\n') crlf += "\r\n";
        current->steps.push_back({Step::Kind::Message, n, crlf});
      }
    } else if (key == "change") {
      current->steps.push_back({Step::Kind::Change, n, value});
    } else if (key == "clock") {
      Step step{Step::Kind::Clock, n, value};
      if (!parse_clock(value, step.seconds)) return fail(n, "clock: expected a UTC time as 2026-12-01T10:00:00Z");
      current->steps.push_back(step);
      clock_set = true;
    } else if (key == "advance") {
      Step step{Step::Kind::Advance, n, value};
      if (!parse_duration(value, step.seconds)) {
        return fail(n, "advance: expected a positive duration up to ten years: N, Ns, Nm, Nh or Nd");
      }
      if (!clock_set) return fail(n, "advance: needs a \"clock:\" line before it in the file");
      current->steps.push_back(step);
    } else if (key == "changes") {
      if (value != "none") return fail(n, "changes: only \"none\" is known");
      current->steps.push_back({Step::Kind::NoChanges, n, value});
    } else {
      return fail(n, "unknown keyword \"" + key + "\"");
    }
  }
  if (current) end_block();
  if (out.cases.empty()) return fail(n, "no \"case:\" in the file");
  return true;
}

}  // namespace mailhook::policyd::testing
