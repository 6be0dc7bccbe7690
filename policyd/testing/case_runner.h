// Policy tests (mailhook-policyd --test CASES...): case files drive the
// configured scripts through a real Runtime and mailcore's SessionMachine
// (the front's own command rules and default replies), with no network:
// DNS answers come from the case (FakeDns), the message never leaves.
// One line per case, a summary, and an exit status for CI. The format is
// in docs/policy-tests.md.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd::testing {

struct Step {
  enum class Kind : std::uint8_t { Send, Expect, ExpectLine, Message, Change, NoChanges, Connect, Clock, Advance,
                                  ExpectNoLine };
  Kind kind = Kind::Send;
  int line = 0;
  std::string text;  // the command, the pattern, the message bytes (CRLF), the change
  std::int64_t seconds = 0;  // Clock: the time (since the epoch) to set; Advance: how far
};

struct Case {
  std::string file;
  int line = 0;  // of `case:`
  std::string name;
  std::string client_address = "192.0.2.1";
  std::uint32_t client_port = 40000;
  std::string client_host;  // PTR name; "" looked up in the case's DNS (if --ptr-lookup)
  std::vector<std::string> dns;  // `dns:` lines
  std::vector<Step> steps;
};

struct CaseFile {
  std::filesystem::path path;
  std::vector<std::filesystem::path> scripts;  // `script:` lines; empty: --script
  std::vector<std::pair<std::string, std::string>> env;  // `env:` lines: set, and granted to os.getenv
  std::vector<std::filesystem::path> read_dirs;            // `lua-read-dir:` lines, beside --lua-read-dir
  std::vector<Case> cases;
};

// Reads one file; false and `error` ("file:line: what") when malformed.
bool parse_case_file(const std::filesystem::path& path, CaseFile& out, std::string& error);

// Runs every case of every file; prints "PASS"/"FAIL" lines and a summary
// to `out`. Returns the exit status: 0 all passed, 1 a case failed, 2 a
// file is malformed or the scripts do not load.
int run_case_files(const std::vector<std::string>& files, RuntimeConfig config, std::ostream& out);

}  // namespace mailhook::policyd::testing
