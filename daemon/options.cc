// CLI11 glue shared by both daemons' options tables (options.h). The
// config file is CLI11's TOML reader; what we add is the printing side,
// units, deprecated aliases and friendlier errors. Never exits except in
// parse(), which is the daemons' documented "bad flag" path.
#include "daemon/options.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "mailcore/config/units.h"

namespace mailhook::daemon {
namespace {

bool is_number(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

bool is_bool(const std::string& s) { return s == "true" || s == "false"; }

// A TOML value: numbers and booleans bare, everything else a basic string
// (CLI11's reader takes the quotes off; backslash escapes are not needed
// by any value we hold, and quotes are replaced by nothing surprising).
std::string toml_value(const std::string& v) {
  if (is_number(v) || is_bool(v)) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string flag_value(const CLI::Option* o, const std::vector<std::string>& results) {
  // A flag's results are "true"/"1"/"-1"...; the last one decides.
  if (results.empty()) return "false";
  const std::string& r = results.back();
  return (r == "false" || r == "0" || r == "-1" || r == "off" || r == "no") ? "false" : "true";
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

CLI::Validator duration_in(std::chrono::milliseconds unit, const std::string& unit_name) {
  return CLI::Validator(
      [unit, unit_name](std::string& v) -> std::string {
        std::string error;
        const auto d = config::parse_duration(v, unit, error);
        if (!d) return error;
        if (d->count() % unit.count() != 0) {
          return "'" + v + "' is not a whole number of " + unit_name;
        }
        v = std::to_string(d->count() / unit.count());
        return "";
      },
      "DURATION", "");
}

CLI::Validator size_in(std::uint64_t unit, const std::string& unit_name) {
  return CLI::Validator(
      [unit, unit_name](std::string& v) -> std::string {
        std::string error;
        const auto n = config::parse_size(v, unit, error);
        if (!n) return error;
        if (*n % unit != 0) return "'" + v + "' is not a whole number of " + unit_name;
        v = std::to_string(*n / unit);
        return "";
      },
      "SIZE", "");
}

Options::Options(CLI::App& app, std::string program) : app_(app), program_(std::move(program)) {
  app_.allow_config_extras(CLI::config_extras_mode::error);
  config_ = app_.set_config("--config", "",
                            "read settings from this TOML file (key = value, the key a long flag without its "
                            "dashes, repeatable flags as arrays); flags on the command line override it "
                            "[default: none]");
  print_ = app_.add_flag("--print-config", print_flag_,
                         "print the effective settings as a --config file (defaults marked) and exit");
  print_->configurable(false);
  not_a_setting(print_);
}

void Options::alias(const std::string& old_name, CLI::Option* current) {
  auto a = std::make_unique<Alias>();
  a->old_name = old_name;
  a->current = current;
  a->old_option = app_.add_option(old_name, a->values, "deprecated: " + current->get_name())->group("");
  if (current->get_expected_max() > 1) a->old_option->expected(0, CLI::detail::expected_max_vector_size);
  not_a_setting(a->old_option);
  aliases_.push_back(std::move(a));
}

void Options::not_a_setting(CLI::Option* option) { not_settings_.push_back(option); }

void Options::apply_aliases() {
  for (auto& a : aliases_) {
    if (a->old_option->count() == 0) continue;
    const std::string now = a->current->get_name();
    warnings_.push_back(program_ + ": " + a->old_name + " is deprecated and goes away in the next release; use " +
                        now);
    if (a->current->count() > 0) continue;  // the new name wins
    for (const std::string& v : a->old_option->results()) a->current->add_result(v);
    a->current->run_callback();
  }
}

std::string Options::closest(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, name.size() / 4) + 1;
  for (const std::string& c : candidates) {
    const std::size_t d = edit_distance(name, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

std::string Options::explain(const CLI::ParseError& e, int argc, char** argv) const {
  std::vector<std::string> names;
  for (const CLI::Option* o : app_.get_options()) {
    if (o->get_group().empty()) continue;  // deprecated names are not suggested
    for (const std::string& l : o->get_lnames()) names.push_back("--" + l);
  }
  const auto suggest = [&](const std::string& given) {
    std::string s = "unknown option " + given;
    if (std::string c = closest(given, names); !c.empty()) s += " (did you mean " + c + "?)";
    return s;
  };
  if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
    std::vector<std::string> lines;
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0) continue;
      arg = arg.substr(0, arg.find('='));
      if (app_.get_option_no_throw(arg) == nullptr) lines.push_back(suggest(arg));
    }
    if (!lines.empty()) {
      std::string out;
      for (const auto& l : lines) out += (out.empty() ? "" : "\n" + program_ + ": ") + l;
      return out;
    }
  }
  if (dynamic_cast<const CLI::ConfigError*>(&e) != nullptr) {
    const std::string what = e.what();
    const std::string marker = "INI was not able to parse ";
    if (what.rfind(marker, 0) == 0) {
      const std::string key = what.substr(marker.size());
      std::vector<std::string> keys;
      for (const auto& n : names) keys.push_back(n.substr(2));
      std::string s = config_file() + ": unknown setting '" + key + "'";
      if (std::string c = closest(key, keys); !c.empty()) s += " (did you mean " + c + "?)";
      return s;
    }
    return config_file() + ": " + what;
  }
  return e.what();
}

std::string Options::try_parse(int argc, char** argv) {
  try {
    app_.parse(argc, argv);
    apply_aliases();
  } catch (const CLI::ParseError& e) {
    return explain(e, argc, argv);
  }
  return "";
}

void Options::parse(int argc, char** argv) {
  try {
    app_.parse(argc, argv);
    apply_aliases();
  } catch (const CLI::CallForHelp& e) {
    std::exit(app_.exit(e));
  } catch (const CLI::CallForAllHelp& e) {
    std::exit(app_.exit(e));
  } catch (const CLI::Success& e) {
    std::exit(app_.exit(e));
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\n", program_.c_str(), explain(e, argc, argv).c_str());
    std::exit(2);
  }
  for (const auto& w : warnings_) std::fprintf(stderr, "%s\n", w.c_str());
}

bool Options::print_config_requested() const { return print_flag_; }

std::string Options::config_file() const {
  if (config_ == nullptr || config_->count() == 0) return "";
  return config_->results().empty() ? "" : config_->results().back();
}

std::string Options::print_config() const {
  std::ostringstream out;
  out << "# " << program_ << " --print-config";
  if (!config_file().empty()) out << " (--config " << config_file() << ")";
  out << "\n";
  for (const CLI::Option* o : app_.get_options()) {
    if (o == config_ || o->get_lnames().empty()) continue;
    if (std::find(not_settings_.begin(), not_settings_.end(), o) != not_settings_.end()) continue;
    if (o->get_name() == "--help" || o->get_name() == "--version") continue;
    const std::string key = o->get_lnames().front();
    const bool flag = o->get_expected_max() == 0 || (o->get_expected_min() == 0 && o->get_type_size() == 0);
    const bool list = o->get_expected_max() > 1;
    const std::string def = o->get_default_str();
    if (o->count() == 0 && !flag && def.empty() && !list) {
      out << "# " << key << " = (not set)  # default\n";
      continue;
    }
    std::string value;
    bool is_default = false;
    if (flag) {
      value = flag_value(o, o->results());
      is_default = value == "false";
    } else if (list) {
      if (o->results().empty()) {
        // An empty TOML array would read back as one empty value.
        out << "# " << key << " = []  # default\n";
        continue;
      }
      value = "[";
      const auto& r = o->results();
      for (std::size_t i = 0; i < r.size(); ++i) value += (i ? ", " : "") + toml_value(r[i]);
      value += "]";
      is_default = r.empty();
    } else {
      const std::string v = o->count() > 0 && !o->results().empty() ? o->results().back() : def;
      value = toml_value(v);
      is_default = v == def;
    }
    out << key << " = " << value << (is_default ? "  # default" : "") << "\n";
  }
  return out.str();
}

}  // namespace mailhook::daemon
