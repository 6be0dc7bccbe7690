// Reading case files (the format of docs/policy-tests.md): one pass over
// the lines, every error naming file and line. Knows nothing of SMTP.
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
                                                   "expect-line, message, change, changes, connect, script, env, "
                                                   "lua-read-dir)");
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
