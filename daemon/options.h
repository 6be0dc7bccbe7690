// What both daemons' options tables share on top of CLI11: --config FILE
// (TOML, key = the long flag name), --print-config, flags with units
// (durations, sizes), deprecated aliases that warn, and "did you mean"
// for a mistyped flag. Each daemon keeps its own table in its config.cc;
// nothing here opens a socket or knows a daemon's settings.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mailhook::daemon {

// A flag's value with a duration unit ("500ms", "30s", "5m", "1h"), stored
// as a whole number of `unit` (a bare number is already in `unit`: the
// flag's old meaning). "1500ms" for a seconds flag is an error, not 1.
CLI::Validator duration_in(std::chrono::milliseconds unit, const std::string& unit_name);

// A flag's value with a size unit ("64K", "25M", "1G"), stored as a whole
// number of `unit` bytes (a bare number is already in `unit`).
CLI::Validator size_in(std::uint64_t unit, const std::string& unit_name);

class Options {
 public:
  // `app` must outlive this. Adds --config and --print-config.
  Options(CLI::App& app, std::string program);

  // An old name kept for one release: `old_name` ("--threads") sets what
  // `current` sets, on the command line and in a config file, warns once on
  // stderr that it is deprecated, and is not in --help or --print-config.
  // The new name wins when both are given.
  void alias(const std::string& old_name, CLI::Option* current);

  // Marks the options --print-config leaves out (actions such as --check,
  // --test: not settings).
  void not_a_setting(CLI::Option* option);

  // Parses argv (and the --config file). On --help, --version, a bad flag,
  // value or config key: prints CLI11's message or "unknown option --x
  // (did you mean --y?)" and exits (2 for errors, 0 for --help).
  void parse(int argc, char** argv);

  // The same without exiting (SIGHUP re-reads the config file): "" when
  // fine, else the one-line error. The app must be a fresh one.
  std::string try_parse(int argc, char** argv);

  // --print-config was given.
  bool print_config_requested() const;

  // The effective settings as TOML, one per line, sorted as the table;
  // "# default" after a value equal to the default; unset options without a
  // default as a commented line. Fed back with --config, gives the same text.
  std::string print_config() const;

  // The --config file's path; empty without one.
  std::string config_file() const;

  // Warnings for deprecated names used in this parse, one line each.
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The closest long option name to `name` within a small edit distance,
  // or "" (exposed for tests).
  static std::string closest(const std::string& name, const std::vector<std::string>& candidates);

 private:
  struct Alias {
    std::string old_name;
    CLI::Option* old_option;
    CLI::Option* current;
    std::vector<std::string> values;
  };

  std::string explain(const CLI::ParseError& e, int argc, char** argv) const;
  void apply_aliases();

  CLI::App& app_;
  std::string program_;
  CLI::Option* config_ = nullptr;
  CLI::Option* print_ = nullptr;
  bool print_flag_ = false;
  std::vector<std::unique_ptr<Alias>> aliases_;
  std::vector<const CLI::Option*> not_settings_;
  std::vector<std::string> warnings_;
};

}  // namespace mailhook::daemon
