// Event -> hook mapping of the smtpe dialect (seed 000): arguments, reply
// rules, the transaction's temp file and the header/body line splitter.
#include "policyd/lua_runtime/session_events.h"

#include <cerrno>
#include <cstring>
#include <system_error>

#include "mailcore/telemetry/log.h"
#include "policyd/lua_runtime/hook_runner.h"

namespace mailhook::policyd {
namespace {

int push_string(lua_State* T, std::string_view v) {
  lua_pushlstring(T, v.data(), v.size());
  return 1;
}

Decision decide(const SessionEvent& e, const HookOutcome& o) {
  if (o.kind == HookOutcome::Kind::Default) return Decision::proceed(e.seq);
  // RFC 5321 3.8: 421 closes the transmission channel.
  return Decision::respond(e.seq, o.reply, o.reply.code == 421);
}

void end_transaction(SessionContext& s) {
  if (s.msg_out) {
    std::fclose(s.msg_out);
    s.msg_out = nullptr;
  }
  if (!s.transaction_id.empty()) {
    std::error_code ec;
    std::filesystem::remove(s.msg_file, ec);
  }
  s.transaction_id.clear();
  s.msg_file.clear();
  s.partial_line.clear();
  s.header.clear();
  s.in_body = false;
  s.changes.clear();
}

// Every event carries the front's transaction id; a new one starts a
// transaction, none ends it (client.id_trans, client.msg_file).
void track_transaction(SessionContext& s, const SessionEvent& e) {
  if (e.kind == EventKind::Reset || e.kind == EventKind::Close) return;
  if (e.transaction_id == s.transaction_id) return;
  end_transaction(s);
  s.transaction_id = e.transaction_id;
  if (!s.transaction_id.empty()) s.msg_file = s.generation->spool_dir / (s.transaction_id + ".msg");
}

// Runs a hook whose reply is ignored; an overrun poisons the message.
void notify(SessionContext& s, HookPhase phase, bool& overrun, const PushArgs& args = {}) {
  if (run_hook(s, phase, args).kind == HookOutcome::Kind::Overrun) overrun = true;
}

void flush_header(SessionContext& s, bool& overrun) {
  if (s.header.empty()) return;
  notify(s, HookPhase::Header, overrun, [&](lua_State* T) { return push_string(T, s.header); });
  s.header.clear();
}

// One complete line (without CRLF) of the message.
void message_line(SessionContext& s, std::string_view line, bool& overrun) {
  if (s.in_body) {
    notify(s, HookPhase::Body, overrun, [&](lua_State* T) { return push_string(T, line); });
    return;
  }
  if (line.empty()) {  // RFC 5322 2.1: the blank line ends the header
    flush_header(s, overrun);
    notify(s, HookPhase::Eoh, overrun);
    s.in_body = true;
  } else if ((line.front() == ' ' || line.front() == '\t') && !s.header.empty()) {
    s.header.append("\r\n").append(line);  // RFC 5322 2.2.3 folding
  } else {
    flush_header(s, overrun);
    s.header.assign(line);
  }
}


void message_chunk(SessionContext& s, const SessionEvent& e, bool& overrun) {
  if (!s.msg_out && !s.msg_file.empty()) {
    s.msg_out = std::fopen(s.msg_file.c_str(), "wb");
    if (!s.msg_out) {
      log::error("session={} cannot write {}: {}", s.start.session_id, s.msg_file.string(), std::strerror(errno));
    }
  }
  if (s.msg_out) std::fwrite(e.chunk.data(), 1, e.chunk.size(), s.msg_out);
  Generation& g = *s.generation;
  const bool lines = has_hook(g, HookPhase::Content) || has_hook(g, HookPhase::Header) ||
                     has_hook(g, HookPhase::Eoh) || has_hook(g, HookPhase::Body);
  if (!lines) return;
  s.partial_line.append(e.chunk);
  const std::size_t last = s.partial_line.rfind("\r\n");
  if (last == std::string::npos) return;
  const std::string complete = s.partial_line.substr(0, last + 2);
  s.partial_line.erase(0, last + 2);
  notify(s, HookPhase::Content, overrun, [&](lua_State* T) { return push_string(T, complete); });
  std::string_view rest = complete;
  while (!rest.empty()) {
    const std::size_t eol = rest.find("\r\n");
    message_line(s, rest.substr(0, eol), overrun);
    rest.remove_prefix(eol + 2);
  }
}

Decision end_of_message(SessionContext& s, const SessionEvent& e, bool& overrun) {
  if (!s.partial_line.empty()) message_line(s, s.partial_line, overrun);
  s.partial_line.clear();
  if (!s.in_body) {  // a message of headers only
    flush_header(s, overrun);
    notify(s, HookPhase::Eoh, overrun);
    s.in_body = true;
  }
  if (s.msg_out) {
    std::fclose(s.msg_out);
    s.msg_out = nullptr;
  }
  if (overrun) return Decision::respond(e.seq, overrun_reply());
  const std::string path = s.msg_file.string();
  auto push_path = [&](lua_State* T) { return push_string(T, path); };
  HookOutcome o = run_hook(s, HookPhase::Dot, push_path);
  if (o.kind == HookOutcome::Kind::Default) o = run_hook(s, HookPhase::Forward, push_path);
  Decision d = decide(e, o);
  if (o.kind != HookOutcome::Kind::Overrun) d.changes = std::move(s.changes);
  s.changes.clear();
  return d;
}

}  // namespace

Decision accept_session(SessionContext& s) {
  const ClientFacts& c = s.start.client;
  HookOutcome o = run_hook(s, HookPhase::Accept, [&](lua_State* T) {
    push_string(T, c.address);
    push_string(T, c.host);
    return 2;
  });
  if (o.kind == HookOutcome::Kind::Default) return Decision::proceed(0);
  // smtpe: a 4xx/5xx from hook.accept is sent instead of the greeting and closes.
  return Decision::respond(0, o.reply, o.reply.code >= 400);
}

std::optional<Decision> handle_event(SessionContext& s, const SessionEvent& e) {
  std::optional<ClientFacts> before_xclient;
  if (e.kind == EventKind::Xclient) before_xclient = s.start.client;
  if (e.client) s.start.client = *e.client;
  track_transaction(s, e);
  s.event = &e;
  auto arg = [&](std::string_view v) { return [v](lua_State* T) { return push_string(T, v); }; };
  HookOutcome o;
  bool overrun = false;
  std::optional<Decision> decision;
  switch (e.kind) {
    case EventKind::Helo: o = run_hook(s, HookPhase::Helo, arg(e.argument)); break;
    case EventKind::Ehlo: o = run_hook(s, HookPhase::Ehlo, arg(e.argument)); break;
    case EventKind::Auth: {
      // hook.auth(auth_arg, user, password): the seed's argument, plus the
      // decoded credentials the front collected (RFC 4954 exchange).
      auto param = [&](std::string_view name) {
        for (const auto& p : e.parameters) {
          if (p.name == name) return std::string_view(p.value);
        }
        return std::string_view();
      };
      o = run_hook(s, HookPhase::Auth, [&](lua_State* T) {
        push_string(T, e.argument);
        push_string(T, param("user"));
        push_string(T, param("password"));
        return 3;
      });
      if (o.kind == HookOutcome::Kind::Replied && o.reply.code == 235) s.start.client.auth_user = param("user");
      break;
    }
    case EventKind::Mail: o = run_hook(s, HookPhase::Mail, arg(e.address)); break;
    case EventKind::Rcpt: o = run_hook(s, HookPhase::Rcpt, arg(e.address)); break;
    case EventKind::Data: o = run_hook(s, HookPhase::Data); break;
    case EventKind::Rset: o = run_hook(s, HookPhase::Rset); break;
    case EventKind::Noop: o = run_hook(s, HookPhase::Noop); break;
    case EventKind::Help: o = run_hook(s, HookPhase::Help); break;
    case EventKind::Quit: o = run_hook(s, HookPhase::Quit); break;
    case EventKind::Unknown: o = run_hook(s, HookPhase::Unknown, arg(e.input)); break;
    case EventKind::Xclient:
      // hook.xclient sees the new facts; a refusal keeps the old ones.
      o = run_hook(s, HookPhase::Xclient);
      if (o.kind != HookOutcome::Kind::Default && o.reply.code >= 400) s.start.client = *before_xclient;
      break;
    case EventKind::Vrfy:
    case EventKind::Expn:
    case EventKind::Starttls:
      break;  // no smtpe hook
    case EventKind::MessageChunk:
      message_chunk(s, e, overrun);
      break;
    case EventKind::EndOfMessage:
      decision = end_of_message(s, e, overrun);
      break;
    case EventKind::Reset:
      run_hook(s, HookPhase::Reset);
      end_transaction(s);
      break;
    case EventKind::Error:
      run_hook(s, HookPhase::Error, [&](lua_State* T) {
        lua_pushinteger(T, e.error_code);
        push_string(T, e.error_text);
        return 2;
      });
      break;
    case EventKind::Close:
      run_hook(s, HookPhase::Close);
      end_transaction(s);
      break;
  }
  s.event = nullptr;
  if (!e.wants_reply) return std::nullopt;
  if (!decision) decision = decide(e, o);
  return decision;
}

void end_session(SessionContext& s, bool close_hook_ran) {
  if (!close_hook_ran && s.generation) run_hook(s, HookPhase::Close);
  end_transaction(s);
  release_thread(s);
}

}  // namespace mailhook::policyd
