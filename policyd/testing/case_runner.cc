// Running case files: each case is one SMTP session through the Runtime,
// with the SessionMachine deciding sequencing and default replies, and the
// front's own decision rules (mailcore/session/reply_rules.h) choosing
// each reply (case_file.cc reads the files).
#include "policyd/testing/case_runner.h"

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <ostream>
#include <sstream>

#include "mailcore/session/reply_rules.h"
#include "mailcore/session/session_machine.h"
#include "mailcore/smtp/base64.h"
#include "mailcore/smtp/reply_text.h"
#include "policyd/dns/fake_resolver.h"
#include "policyd/lua_runtime/script_clock.h"
#include "policyd/testing/recording_observer.h"

namespace mailhook::policyd::testing {
namespace {

// "*" and "?" wildcards over the whole text.
bool glob(std::string_view p, std::string_view t) {
  std::size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi, ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

// An expectation: "250" (the code only) or a pattern over "code text".
bool reply_matches(const std::string& pattern, const Reply& r) {
  if (pattern.size() == 3 && std::isdigit(static_cast<unsigned char>(pattern[0]))) {
    return std::to_string(r.code) == pattern;
  }
  return glob(pattern, r.summary());
}

// A change as case files write it.
std::string render(const MessageChange& c) {
  using K = MessageChange::Kind;
  switch (c.kind) {
    case K::AddHeader: return "add_header " + c.name + ": " + c.value;
    case K::InsertHeader: return "insert_header " + std::to_string(c.index) + " " + c.name + ": " + c.value;
    case K::ChangeHeader:
      return c.erase ? "delete_header " + c.name + " " + std::to_string(c.index)
                     : "change_header " + c.name + " " + std::to_string(c.index) + ": " + c.value;
    case K::AddRcpt: return "add_rcpt " + c.value + (c.name.empty() ? "" : " " + c.name);
    case K::DelRcpt: return "del_rcpt " + c.value;
    case K::ChangeFrom: return "change_from " + c.value;
    case K::ReplaceBody: return "replace_body";
    case K::Quarantine: return "quarantine " + c.value;
    case K::Discard: return "discard";
  }
  return "?";
}

struct Failure {
  int line = 0;
  std::string what;
};

class CaseRun {
 public:
  CaseRun(Runtime& runtime, const Case& c, std::chrono::milliseconds limit, ScriptClock& clock)
      : runtime_(runtime), c_(c), limit_(limit), clock_(clock) {}

  std::optional<Failure> run();

 private:
  std::optional<Decision> ask(SessionEvent e) {
    e.seq = ++seq_;
    e.wants_reply = true;
    e.helo = machine_->helo();
    session_->post(std::move(e));
    return observer_->next(limit_);
  }
  void notify(SessionEvent e) {
    e.seq = ++seq_;
    e.helo = machine_->helo();
    session_->post(std::move(e));
  }
  bool command(const std::string& line, int at, std::optional<Failure>& failure);
  bool message(const std::string& bytes, int at, std::optional<Failure>& failure);
  bool auth(const std::string& line, const session::Step& step, int at, std::optional<Failure>& failure);

  Runtime& runtime_;
  const Case& c_;
  std::chrono::milliseconds limit_;
  ScriptClock& clock_;  // what the scripts' os.time() and spf/dkim see
  std::shared_ptr<RecordingObserver> observer_ = std::make_shared<RecordingObserver>();
  std::shared_ptr<Session> session_;
  std::unique_ptr<session::SessionMachine> machine_;
  std::uint64_t seq_ = 0;
  int transactions_ = 0;
  Reply last_;                          // the reply to the last send/message
  bool have_last_ = false;
  std::vector<MessageChange> changes_;  // of the last message
  bool closed_ = false;
  bool in_data_ = false;
};

bool CaseRun::command(const std::string& line, int at, std::optional<Failure>& failure) {
  const std::string candidate = "T" + std::to_string(transactions_ + 1);
  session::Step step = machine_->on_command(line, candidate);
  if (step.starts_auth) return auth(line, step, at, failure);
  std::optional<Decision> d;
  if (step.event) {
    d = ask(std::move(*step.event));
    step.event.reset();
    if (!d) {
      failure = Failure{at, "no decision from policyd for \"" + line + "\""};
      return false;
    }
  }
  // The front's rules (mailcore/session/reply_rules.h), not a copy.
  const session::ChosenReply chosen = session::command_reply(*machine_, step, d ? &*d : nullptr);
  const Reply& final_reply = chosen.reply;
  if (auto reset = machine_->commit(step, final_reply)) notify(std::move(*reset));
  if (machine_->transaction_id() == candidate && step.verb == smtp::Verb::Mail) ++transactions_;
  last_ = final_reply;
  have_last_ = true;
  closed_ = chosen.close;
  in_data_ = step.verb == smtp::Verb::Data && final_reply.code == 354;
  return true;
}

// AUTH PLAIN with its initial response (RFC 4616), the one form case files
// use; the front's exchange (334 challenges, LOGIN) is not replayed.
bool CaseRun::auth(const std::string& line, const session::Step& step, int at, std::optional<Failure>& failure) {
  static const Reply kFailed{535, "5.7.8", {"Authentication credentials invalid"}};
  std::istringstream words(step.argument);
  std::string mech, initial;
  words >> mech >> initial;
  for (char& c : mech) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::optional<std::string> decoded = mech == "PLAIN" ? smtp::base64_decode(initial) : std::nullopt;
  const std::size_t a = decoded ? decoded->find('\0') : std::string::npos;
  const std::size_t b = a == std::string::npos ? a : decoded->find('\0', a + 1);
  if (b == std::string::npos) {
    failure = Failure{at, "case files send AUTH as \"AUTH PLAIN <base64 of NUL user NUL password>\""};
    return false;
  }
  const std::string user = decoded->substr(a + 1, b - a - 1);
  last_ = kFailed;
  if (machine_->listens(EventKind::Auth)) {
    std::optional<Decision> d = ask(machine_->auth_event(line, step.argument, user, decoded->substr(b + 1)));
    if (!d) {
      failure = Failure{at, "no decision from policyd for AUTH"};
      return false;
    }
    const Reply r = session::choose_reply(*d, kFailed).reply;
    if (r.code == 235 || r.code >= 400) last_ = r;
    if (r.code == 235) machine_->authenticated(user);
  }
  have_last_ = true;
  return true;
}

bool CaseRun::message(const std::string& bytes, int at, std::optional<Failure>& failure) {
  if (observer_->capabilities().wants_message) {
    SessionEvent chunk = machine_->notification(EventKind::MessageChunk);
    chunk.chunk = bytes;
    notify(std::move(chunk));
  }
  Decision d = Decision::proceed(0);
  if (machine_->listens(EventKind::EndOfMessage)) {
    std::optional<Decision> got = ask(machine_->end_of_message_event(bytes.size()));
    if (!got) {
      failure = Failure{at, "no decision from policyd at the end of the message"};
      return false;
    }
    d = std::move(*got);
  }
  const session::ChosenReply chosen = session::choose_reply(d, Reply{});
  const Reply& policy = chosen.reply;
  changes_ = d.changes;
  if (policy.code >= 400) {
    last_ = policy;
    changes_.clear();
  } else {
    last_ = session::message_reply(policy, Reply{250, "2.0.0", {"Ok: queued as " + machine_->transaction_id()}});
  }
  have_last_ = true;
  closed_ = chosen.close || last_.code == 421;
  in_data_ = false;
  if (auto reset = machine_->end_transaction()) notify(std::move(*reset));
  return true;
}

std::optional<Failure> CaseRun::run() {
  SessionStart start;
  start.session_id = "case" + std::to_string(c_.line);
  start.local_host = "mx.test";
  start.client.address = c_.client_address;
  start.client.port = c_.client_port;
  start.client.host = c_.client_host;
  // The front's defaults (--max-message-size, --max-recipients), as a
  // front started without those flags announces them.
  const session::Limits limits;
  start.limits = {limits.max_message_size, limits.max_recipients, limits.max_line_length};
  session_ = runtime_.open(start, observer_);
  std::optional<Decision> opened = observer_->next(limit_);
  if (!opened) return Failure{c_.line, "policyd did not open the session"};
  machine_ = std::make_unique<session::SessionMachine>("mx.test", limits, observer_->capabilities().events);
  machine_->allow_plaintext_auth(true);  // as if under TLS: cases may AUTH
  if (opened->limits) machine_->set_limits(session::limits_of(*opened->limits));
  const session::ChosenReply greeting = session::connect_reply(*opened, Reply{220, "", {"mx.test ESMTP mailhook"}});
  last_ = greeting.reply;
  have_last_ = true;
  closed_ = greeting.close;
  std::optional<Failure> failure;
  for (const Step& s : c_.steps) {
    switch (s.kind) {
      case Step::Kind::Connect:
      case Step::Kind::Expect:
        if (!have_last_) {
          failure = Failure{s.line, "expect with nothing sent before it"};
        } else if (!reply_matches(s.text, last_)) {
          failure = Failure{s.line, "expected " + s.text + ", got " + last_.summary()};
        }
        have_last_ = false;
        break;
      case Step::Kind::ExpectLine: {
        bool found = false;
        for (const auto& l : last_.lines) {
          const std::string line = std::to_string(last_.code) + " " +
                                   (last_.enhanced.empty() ? "" : last_.enhanced + " ") + l;
          found = found || glob(s.text, line);
        }
        if (!found) failure = Failure{s.line, "expected a line " + s.text + " in the reply " + last_.summary() + "…"};
        break;
      }
      case Step::Kind::ExpectNoLine:  // a keyword a script took out of the EHLO reply
        for (const auto& l : last_.lines) {
          const std::string line = std::to_string(last_.code) + " " +
                                   (last_.enhanced.empty() ? "" : last_.enhanced + " ") + l;
          if (glob(s.text, line)) {
            failure = Failure{s.line, "expected no line " + s.text + " in the reply, got " + line};
            break;
          }
        }
        break;
      case Step::Kind::Send:
        if (closed_) {
          failure = Failure{s.line, "the connection was closed before \"" + s.text + "\" (last reply " +
                                        last_.summary() + ")"};
        } else if (in_data_) {
          failure = Failure{s.line, "after 354 the case needs a message: line"};
        } else {
          command(s.text, s.line, failure);
        }
        break;
      case Step::Kind::Message:
        if (!in_data_) {
          failure = Failure{s.line, "message: without DATA answered 354 (last reply " + last_.summary() + ")"};
        } else {
          message(s.text, s.line, failure);
        }
        break;
      case Step::Kind::Change: {
        bool found = false;
        for (const auto& c : changes_) found = found || glob(s.text, render(c));
        if (!found) {
          std::string got;
          for (const auto& c : changes_) got += (got.empty() ? "" : "; ") + render(c);
          failure = Failure{s.line, "expected the change \"" + s.text + "\", got " + (got.empty() ? "none" : got)};
        }
        break;
      }
      case Step::Kind::Clock:
        clock_.set(s.seconds);
        break;
      case Step::Kind::Advance:
        clock_.advance(s.seconds);
        break;
      case Step::Kind::NoChanges:
        if (!changes_.empty()) failure = Failure{s.line, "expected no change, got " + render(changes_.front()) + "…"};
        break;
    }
    if (failure) break;
  }
  if (!closed_) {
    SessionEvent bye = machine_->notification(EventKind::Close);
    notify(std::move(bye));
  }
  session_->close();
  return failure;
}

}  // namespace

int run_case_files(const std::vector<std::string>& files, RuntimeConfig config, std::ostream& out) {
  std::vector<CaseFile> parsed;
  for (const auto& f : files) {
    CaseFile cf;
    std::string error;
    if (!parse_case_file(f, cf, error)) {
      out << "ERROR " << error << "\n";
      return 2;
    }
    parsed.push_back(std::move(cf));
  }
  int passed = 0, failed = 0;
  const std::vector<std::filesystem::path> default_scripts = config.scripts;
  const std::vector<std::filesystem::path> default_read_dirs = config.lua_read_dirs;
  const std::vector<std::string> default_env = config.lua_env;
  config.workers = 1;
  config.fake_dns = std::make_shared<dns::FakeDns>();
  // Every hook ends within --hook-timeout, every wait within its timeout;
  // a decision later than all of that together is a failure of its own.
  const auto limit = config.hook_timeout * 2 + config.dns_timeout + config.kv_timeout + std::chrono::seconds(5);
  for (const CaseFile& cf : parsed) {
    // `env:` holds for this file only; the values before it come back after.
    std::vector<std::pair<std::string, std::optional<std::string>>> saved;
    for (const auto& [k, v] : cf.env) {
      const char* old = std::getenv(k.c_str());
      saved.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      setenv(k.c_str(), v.c_str(), 1);
    }
    config.scripts = cf.scripts.empty() ? default_scripts : cf.scripts;
    // The file's own grants, for this file only.
    config.lua_read_dirs = default_read_dirs;
    config.lua_read_dirs.insert(config.lua_read_dirs.end(), cf.read_dirs.begin(), cf.read_dirs.end());
    config.lua_env = default_env;
    for (const auto& [k, v] : cf.env) config.lua_env.push_back(k);
    // The scripts' clock: the system's until a case sets it (`clock:`);
    // it holds across the file's cases, like the scripts' globals.
    config.clock = std::make_shared<ScriptClock>();
    std::string error;
    std::unique_ptr<Runtime> runtime = Runtime::create(config, error);
    if (!runtime) {
      out << "ERROR " << cf.path.string() << ": " << error << "\n";
      return 2;
    }
    for (const Case& c : cf.cases) {
      config.fake_dns->clear();
      for (const auto& line : c.dns) {
        std::string ignored;
        config.fake_dns->add(line, ignored);
      }
      CaseRun run(*runtime, c, std::chrono::duration_cast<std::chrono::milliseconds>(limit), *config.clock);
      const std::optional<Failure> f = run.run();
      if (f) {
        ++failed;
        out << "FAIL " << c.file << ":" << c.line << " " << c.name << ": line " << f->line << ": " << f->what << "\n";
      } else {
        ++passed;
        out << "PASS " << c.file << ":" << c.line << " " << c.name << "\n";
      }
    }
    runtime->stop();
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
      if (it->second) {
        setenv(it->first.c_str(), it->second->c_str(), 1);
      } else {
        unsetenv(it->first.c_str());
      }
    }
  }
  out << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}

}  // namespace mailhook::policyd::testing
