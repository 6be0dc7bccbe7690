// A session's events on its worker: the transaction's temp file, the
// header/body line splitter, reply rules and decisions. Which hook an
// event calls, with which arguments, is the smtpe dialect's
// (policyd/dialects/smtpe.cc).
#include "policyd/lua_runtime/session_events.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <system_error>

#include "mailcore/telemetry/log.h"
#include "policyd/dialects/smtpe.h"
#include "policyd/lua_runtime/hook_runner.h"
#include "policyd/lua_runtime/refusal_log.h"
#include "policyd/lua_runtime/runtime_metrics.h"

namespace mailhook::policyd {
namespace {

int push_string(lua_State* T, std::string_view v) {
  lua_pushlstring(T, v.data(), v.size());
  return 1;
}

// What `mailhook.*` asked during the hooks travels with the decision.
void take_pending(SessionContext& s, Decision& d) {
  d.disconnect = d.disconnect || s.pending.disconnect;
  d.limits = std::move(s.pending.limits);
  d.ehlo_keywords = std::move(s.pending.ehlo_keywords);
  s.pending = {};
}

// The per-rule count (mailhook_policyd_replies_total{hook,script,class}) of
// a reply that goes out.
void count_reply(SessionContext& s, const HookOutcome& o) {
  if (o.kind != HookOutcome::Kind::Default) s.metrics->reply(*s.generation, o.script, o.phase, o.reply.code);
}

// Who decided travels with the decision: the front's refusal line names it.
void name_decider(Decision& d, const HookOutcome& o) {
  if (o.kind == HookOutcome::Kind::Default) return;
  d.script = o.script_name;
  d.hook = std::string(hook_name(o.phase));
}

Decision decide(SessionContext& s, const SessionEvent& e, const HookOutcome& o) {
  count_reply(s, o);
  Decision d = o.kind == HookOutcome::Kind::Default
                   ? Decision::proceed(e.seq)
                   // RFC 5321 3.8: 421 closes the transmission channel.
                   : Decision::respond(e.seq, o.reply, o.reply.code == 421);
  name_decider(d, o);
  take_pending(s, d);
  return d;
}

void end_transaction(SessionContext& s) {
  if (s.msg_out) {
    std::fclose(s.msg_out);
    s.msg_out = nullptr;
  }
  if (!s.transaction_id.empty() && s.generation->capabilities.wants_message) {  // else no file was written
    std::error_code ec;
    std::filesystem::remove(s.msg_file, ec);
  }
  s.transaction_id.clear();
  drop_transaction_notes(s);
  s.recipients.clear();
  s.sender.clear();
  s.msg_file.clear();
  s.partial_line.clear();
  s.header.clear();
  s.in_body = false;
  s.changes.clear();
  s.poisoned_by.clear();
}

// The transaction's temp file: a name policyd makes (a random per-process
// tag and a counter) inside --spool-dir. Never derived from the wire: a
// transaction id like "../x" or "/etc/x" must not become a path
// (THREATS.md, front <-> policyd gRPC).
std::filesystem::path new_msg_file(const std::filesystem::path& dir) {
  static const std::string tag = [] {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}-{}", rd(), rd(), getpid());
  }();
  static std::atomic<std::uint64_t> counter{0};
  return dir / fmt::format("{}-{}.msg", tag, ++counter);
}

// RCPT TO was accepted (client.recipients): the script replied 2xx, or it
// let the default stand and that is 2xx. The milter shape sends no
// default: there a recipient counts unless a script refused it.
bool accepted(const SessionEvent& e, const HookOutcome& o) {
  switch (o.kind) {
    case HookOutcome::Kind::Replied: return o.reply.code / 100 == 2;
    case HookOutcome::Kind::Overrun: return false;
    case HookOutcome::Kind::Default: return !e.default_reply || e.default_reply->code / 100 == 2;
  }
  return false;
}

// Every event carries the front's transaction id; a new one starts a
// transaction, none ends it (client.id_trans, client.msg_file).
void track_transaction(SessionContext& s, const SessionEvent& e) {
  if (e.kind == EventKind::Reset || e.kind == EventKind::Close) return;
  if (e.transaction_id == s.transaction_id) return;
  end_transaction(s);
  s.transaction_id = e.transaction_id;
  if (!s.transaction_id.empty()) s.msg_file = new_msg_file(s.generation->spool_dir);
}

// Runs a hook whose reply is ignored; an overrun (or an error under
// --hook-error tempfail) poisons the message: it gets 451 at its end.
asio::awaitable<void> notify(SessionContext& s, HookPhase phase, bool& overrun, PushArgs args = {}) {
  const HookOutcome o = co_await run_hook(s, phase, std::move(args));
  if (o.kind == HookOutcome::Kind::Overrun) {
    if (!overrun) s.overrun_by = std::pair{o.phase, o.script};
    overrun = true;
    if (s.poisoned_by.empty()) {
      s.poisoned_by = o.script_name;
      s.poisoned_phase = o.phase;
    }
  }
}

asio::awaitable<void> flush_header(SessionContext& s, bool& overrun) {
  if (s.header.empty()) co_return;
  co_await notify(s, HookPhase::Header, overrun, [&](lua_State* T) { return push_string(T, s.header); });
  s.header.clear();
}

// One complete line (without CRLF) of the message.
asio::awaitable<void> message_line(SessionContext& s, std::string_view line, bool& overrun) {
  if (s.in_body) {
    co_await notify(s, HookPhase::Body, overrun, [&](lua_State* T) { return push_string(T, line); });
    co_return;
  }
  if (line.empty()) {  // RFC 5322 2.1: the blank line ends the header
    co_await flush_header(s, overrun);
    if (s.msg_out) std::fflush(s.msg_out);  // hook.eoh may read the header from client.msg_file
    co_await notify(s, HookPhase::Eoh, overrun);
    s.in_body = true;
  } else if ((line.front() == ' ' || line.front() == '\t') && !s.header.empty()) {
    s.header.append("\r\n").append(line);  // RFC 5322 2.2.3 folding
  } else {
    co_await flush_header(s, overrun);
    s.header.assign(line);
  }
}


asio::awaitable<void> message_chunk(SessionContext& s, const SessionEvent& e, bool& overrun) {
  if (!s.msg_out && !s.msg_file.empty()) {
    // O_EXCL | O_NOFOLLOW: never reuse or follow what another put there.
    const int fd = ::open(s.msg_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    s.msg_out = fd < 0 ? nullptr : ::fdopen(fd, "wb");
    if (!s.msg_out) {
      log::error("session={} cannot write {}: {}", log::escape_text(s.start.session_id), s.msg_file.string(), std::strerror(errno));
      if (fd >= 0) ::close(fd);
      s.msg_file.clear();  // not ours: end_transaction must not remove it
    }
  }
  if (s.msg_out) std::fwrite(e.chunk.data(), 1, e.chunk.size(), s.msg_out);
  Generation& g = *s.generation;
  const bool lines = has_hook(g, HookPhase::Content) || has_hook(g, HookPhase::Header) ||
                     has_hook(g, HookPhase::Eoh) || has_hook(g, HookPhase::Body);
  if (!lines) co_return;
  s.partial_line.append(e.chunk);
  const std::size_t last = s.partial_line.rfind("\r\n");
  if (last == std::string::npos) co_return;
  const std::string complete = s.partial_line.substr(0, last + 2);
  s.partial_line.erase(0, last + 2);
  co_await notify(s, HookPhase::Content, overrun, [&](lua_State* T) { return push_string(T, complete); });
  std::string_view rest = complete;
  while (!rest.empty()) {
    const std::size_t eol = rest.find("\r\n");
    co_await message_line(s, rest.substr(0, eol), overrun);
    rest.remove_prefix(eol + 2);
  }
}

asio::awaitable<Decision> end_of_message(SessionContext& s, const SessionEvent& e, bool& overrun) {
  if (!s.partial_line.empty()) {
    const std::string last = std::move(s.partial_line);
    co_await message_line(s, last, overrun);
  }
  s.partial_line.clear();
  if (!s.in_body) {  // a message of headers only
    co_await flush_header(s, overrun);
    co_await notify(s, HookPhase::Eoh, overrun);
    s.in_body = true;
  }
  if (s.msg_out) {
    std::fclose(s.msg_out);
    s.msg_out = nullptr;
  }
  if (overrun || !s.poisoned_by.empty()) {
    if (s.overrun_by) s.metrics->reply(*s.generation, s.overrun_by->second, s.overrun_by->first, 451);
    s.overrun_by.reset();
    Decision d = Decision::respond(e.seq, overrun_reply());
    d.script = s.poisoned_by;
    d.hook = std::string(hook_name(s.poisoned_phase));
    co_return d;
  }
  // No script asked for the message (hook.dot() without a parameter):
  // no file was written, and the hooks get nil.
  const bool file = s.generation->capabilities.wants_message;
  const std::string path = s.msg_file.string();
  auto push_path = [&](lua_State* T) {
    if (!file) return lua_pushnil(T), 1;
    return push_string(T, path);
  };
  HookOutcome o = co_await run_hook(s, HookPhase::Dot, push_path);
  if (o.kind == HookOutcome::Kind::Default) {
    o = co_await run_hook(s, HookPhase::Forward, push_path);
  }
  Decision d = decide(s, e, o);
  if (o.kind != HookOutcome::Kind::Overrun) d.changes = std::move(s.changes);
  s.changes.clear();
  co_return d;
}

}  // namespace

asio::awaitable<Decision> accept_session(SessionContext& s) {
  const ClientFacts& c = s.start.client;
  const HookOutcome o =
      co_await run_hook(s, HookPhase::Accept, [&](lua_State* T) { return dialects::push_accept_args(T, c); });
  count_reply(s, o);
  // smtpe: a 4xx/5xx from hook.accept is sent instead of the greeting and closes.
  Decision d = o.kind == HookOutcome::Kind::Default ? Decision::proceed(0)
                                                    : Decision::respond(0, o.reply, o.reply.code >= 400);
  name_decider(d, o);
  take_pending(s, d);
  if (d.action == Decision::Action::Reply && d.reply.code >= 400) log_refusal(s, "reject", d.hook, d.script, d.reply);
  co_return d;
}

asio::awaitable<std::optional<Decision>> handle_event(SessionContext& s, const SessionEvent& e) {
  std::optional<ClientFacts> before_xclient;
  if (e.kind == EventKind::Xclient) before_xclient = s.start.client;
  if (e.client) {
    // New facts (XCLIENT): a name given wins; a new address without one
    // is looked up again when a script asks.
    if (!e.client->host.empty()) {
      s.host_resolved = true;
      s.host_lookup.reset();
    } else if (e.client->address != s.start.client.address) {
      s.host_resolved = !s.ptr_lookup;
      s.host_lookup.reset();
    }
    s.start.client = *e.client;
  }
  track_transaction(s, e);
  if (e.kind == EventKind::Helo || e.kind == EventKind::Ehlo) {
    s.helo = e.argument;  // smtpf: smtp.sess.helo is the argument in do_helo already
  } else if (!e.helo.empty()) {
    s.helo = e.helo;
  }
  if (e.kind == EventKind::Mail) {
    s.sender = e.address;
  } else if (!e.sender.empty()) {
    s.sender = e.sender;  // MAIL itself was not sent: no script listens to it
  }
  s.event = &e;
  if (s.trace) {
    log::info("trace session={} event {} seq={} input=\"{}\" default=\"{}\"", log::escape_text(s.start.session_id),
              event_kind_name(e.kind), e.seq, log::escape_text(e.input),
              log::escape_text(e.default_reply ? e.default_reply->summary() : std::string()));
  }
  bool overrun = false;
  std::optional<Decision> decision;
  PushArgs args;
  const std::optional<HookPhase> phase = dialects::smtpe_hook(e, args);
  HookOutcome o;
  if (phase) {
    // A declaration, not `o = co_await …`: GCC 12 miscompiles co_await
    // inside an expression (see frontend/delivery/smart_host.cc).
    HookOutcome got = co_await run_hook(s, *phase, std::move(args));
    o = std::move(got);
  } else if (e.kind == EventKind::MessageChunk) {
    s.metrics->message_bytes.add(e.chunk.size());
    co_await message_chunk(s, e, overrun);
  } else if (e.kind == EventKind::EndOfMessage) {
    Decision d = co_await end_of_message(s, e, overrun);
    decision = std::move(d);
  }
  if (e.kind == EventKind::Rcpt && accepted(e, o)) s.recipients.push_back(e.address);
  if (e.kind == EventKind::Auth && o.kind == HookOutcome::Kind::Replied && o.reply.code == 235) {
    s.start.client.auth_user = dialects::event_parameter(e, "user");
  }
  if (e.kind == EventKind::Xclient && o.kind != HookOutcome::Kind::Default && o.reply.code >= 400) {
    s.start.client = *before_xclient;  // a refusal keeps the old facts
  }
  if (e.wants_reply && !decision) decision = decide(s, e, o);
  if (decision && decision->action == Decision::Action::Reply && decision->reply.code >= 400) {
    log_refusal(s, "reject", decision->hook, decision->script, decision->reply);
  }
  if (e.kind == EventKind::Reset || e.kind == EventKind::Close) end_transaction(s);
  s.event = nullptr;
  if (!e.wants_reply) co_return std::nullopt;
  co_return decision;
}

asio::awaitable<void> end_session(SessionContext& s, bool close_hook_ran) {
  if (!close_hook_ran && s.generation) {
    co_await run_hook(s, HookPhase::Close);
  }
  discard_session(s);
}

void discard_session(SessionContext& s) {
  end_transaction(s);
  drop_session_notes(s);
  release_thread(s);
  s.dns.reset();
  s.kv_call.reset();
  s.dmarc.reset();
}

}  // namespace mailhook::policyd
