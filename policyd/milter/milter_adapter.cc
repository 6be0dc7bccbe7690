// libmilter's callbacks -> MilterSession -> Runtime, and decisions back
// as milter statuses, replies and message changes (smfi_*).
#include "policyd/milter/milter_adapter.h"

#include <arpa/inet.h>
#include <libmilter/mfapi.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "mailcore/telemetry/log.h"
#include "policyd/milter/milter_mapping.h"
#include "policyd/milter/milter_session.h"

namespace mailhook::policyd::milter {
namespace {

static_assert(flag::kNrConn == SMFIP_NR_CONN && flag::kSkip == SMFIP_SKIP && flag::kNrBody == SMFIP_NR_BODY &&
              flag::kHdrLeadspc == SMFIP_HDR_LEADSPC && flag::kNoUnknown == SMFIP_NOUNKNOWN);
static_assert(flag::kAddHdrs == SMFIF_ADDHDRS && flag::kChgFrom == SMFIF_CHGFROM &&
              flag::kAddRcptPar == SMFIF_ADDRCPT_PAR && flag::kQuarantine == SMFIF_QUARANTINE);

// libmilter's globals, and ours beside them.
Runtime* g_runtime = nullptr;
std::string g_socket;
std::thread g_thread;
std::atomic<std::uint64_t> g_next_id{0};
std::atomic<bool> g_main_done{false};

struct Conn {
  std::unique_ptr<MilterSession> session;
  unsigned long protocol = 0;  // what was negotiated
};

Conn* conn_of(SMFICTX* ctx) { return static_cast<Conn*>(smfi_getpriv(ctx)); }

std::string new_session_id() {
  return fmt::format("M{:X}{:06X}", static_cast<std::uint32_t>(std::time(nullptr)), g_next_id.fetch_add(1) & 0xFFFFFF);
}

// The connection's state; made at negotiate (or connect for an MTA that
// does not negotiate).
Conn& ensure_conn(SMFICTX* ctx) {
  if (Conn* c = conn_of(ctx)) return *c;
  auto* c = new Conn;
  c->session = std::make_unique<MilterSession>(*g_runtime, g_runtime->capabilities(), new_session_id());
  smfi_setpriv(ctx, c);
  return *c;
}

// Reads every known macro into the facts (client.macros).
void read_macros(SMFICTX* ctx, ClientFacts& f) {
  for (const std::string& name : known_macros()) {
    if (const char* v = smfi_getsymval(ctx, const_cast<char*>(name.c_str()))) f.attributes[name] = v;
  }
  auto macro = [&](const char* name) {
    auto it = f.attributes.find(name);
    return it == f.attributes.end() ? std::string() : it->second;
  };
  if (std::string v = macro("{tls_version}"); !v.empty()) f.tls_protocol = v;
  if (std::string v = macro("{cipher}"); !v.empty()) f.tls_cipher = v;
  if (std::string v = macro("{auth_authen}"); !v.empty()) f.auth_user = v;
  if (std::string v = macro("{daemon_addr}"); !v.empty()) f.local_address = v;
  if (std::string v = macro("{daemon_port}"); !v.empty()) f.local_port = static_cast<std::uint32_t>(std::atoi(v.c_str()));
}

sfsistat apply_reply(SMFICTX* ctx, const std::optional<Decision>& d, bool can_set_reply = true) {
  if (!d) return SMFIS_TEMPFAIL;  // policyd is stopping: never accept blind
  const MilterReply r = milter_reply(*d);
  if (r.status == Status::Continue) return SMFIS_CONTINUE;
  if (can_set_reply) {
    const char* x = r.enhanced.empty() ? nullptr : r.enhanced.c_str();
    int rc = MI_SUCCESS;
    if (r.lines.size() <= 1) {
      rc = smfi_setreply(ctx, const_cast<char*>(r.code.c_str()), const_cast<char*>(x),
                         const_cast<char*>(r.lines.empty() ? "" : r.lines[0].c_str()));
    } else {
      const char* l[33] = {};
      for (std::size_t i = 0; i < r.lines.size(); ++i) l[i] = r.lines[i].c_str();
      rc = smfi_setmlreply(ctx, r.code.c_str(), x, l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], l[8], l[9], l[10],
                           l[11], l[12], l[13], l[14], l[15], l[16], l[17], l[18], l[19], l[20], l[21], l[22], l[23],
                           l[24], l[25], l[26], l[27], l[28], l[29], l[30], l[31], static_cast<const char*>(nullptr));
    }
    if (rc != MI_SUCCESS) log::warning("milter: the MTA's reply could not be set to {}", d->reply.summary());
  }
  return r.status == Status::Reject ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

// A step the MTA may have been told needs no reply.
sfsistat no_reply(const Conn& c, unsigned long nr_flag) {
  return (c.protocol & nr_flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

sfsistat on_negotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                      unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3) {
  Conn& c = ensure_conn(ctx);
  const Negotiation n = negotiate(c.session->capabilities(), f0, f1);
  c.protocol = n.protocol;
  *pf0 = n.actions;
  *pf1 = n.protocol;
  *pf2 = 0;
  *pf3 = 0;
  return SMFIS_CONTINUE;
}

sfsistat on_connect(SMFICTX* ctx, char* hostname, _SOCK_ADDR* addr) {
  Conn& c = ensure_conn(ctx);
  ClientFacts f;
  char text[INET6_ADDRSTRLEN] = {};
  if (addr && addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    f.port = ntohs(in->sin_port);
  } else if (addr && addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    f.port = ntohs(in6->sin6_port);
  }
  f.address = text;
  // The MTA's verified name; "[192.0.2.1]" means it has none.
  if (hostname && hostname[0] != '[') f.host = hostname;
  read_macros(ctx, f);
  const std::optional<Decision> d = c.session->open(std::move(f), {});
  if (!d) return no_reply(c, SMFIP_NR_CONN);
  return apply_reply(ctx, d, false);  // libmilter allows no custom reply at connect
}

sfsistat on_helo(SMFICTX* ctx, char* arg) {
  Conn& c = ensure_conn(ctx);
  MilterSession& s = *c.session;
  s.helo = arg ? arg : "";
  read_macros(ctx, s.facts());
  s.facts_changed();
  const EventKind kind = helo_kind(s.capabilities());
  if (!s.capabilities().events.has(kind)) return no_reply(c, SMFIP_NR_HELO);
  SessionEvent e;
  e.kind = kind;
  e.argument = s.helo;
  e.input = std::string(kind == EventKind::Ehlo ? "EHLO " : "HELO ") + s.helo;
  return apply_reply(ctx, s.ask(std::move(e)));
}

std::vector<std::string> args_of(char** argv) {
  std::vector<std::string> v;
  for (int i = 0; argv && argv[i]; ++i) v.emplace_back(argv[i]);
  return v;
}

std::string input_of(const char* verb, const std::vector<std::string>& args) {
  std::string line = verb;
  for (std::size_t i = 0; i < args.size(); ++i) line += (i ? " " : "") + args[i];
  return line;
}

sfsistat on_envelope(SMFICTX* ctx, char** argv, EventKind kind, unsigned long nr_flag) {
  Conn& c = ensure_conn(ctx);
  MilterSession& s = *c.session;
  if (kind == EventKind::Mail) s.begin_transaction();
  read_macros(ctx, s.facts());
  s.facts_changed();
  SessionEvent e;
  e.kind = kind;
  const std::vector<std::string> args = args_of(argv);
  parse_envelope_args(args, e.address, e.parameters);
  e.input = input_of(kind == EventKind::Mail ? "MAIL FROM:" : "RCPT TO:", args);
  if (!s.capabilities().events.has(kind)) return no_reply(c, nr_flag);
  return apply_reply(ctx, s.ask(std::move(e)));
}

sfsistat on_envfrom(SMFICTX* ctx, char** argv) { return on_envelope(ctx, argv, EventKind::Mail, SMFIP_NR_MAIL); }
sfsistat on_envrcpt(SMFICTX* ctx, char** argv) { return on_envelope(ctx, argv, EventKind::Rcpt, SMFIP_NR_RCPT); }

sfsistat on_data(SMFICTX* ctx) {
  Conn& c = ensure_conn(ctx);
  MilterSession& s = *c.session;
  if (!s.capabilities().events.has(EventKind::Data)) return no_reply(c, SMFIP_NR_DATA);
  SessionEvent e;
  e.kind = EventKind::Data;
  e.input = "DATA";
  return apply_reply(ctx, s.ask(std::move(e)));
}

sfsistat on_header(SMFICTX* ctx, char* name, char* value) {
  Conn& c = ensure_conn(ctx);
  c.session->add_message_bytes(header_bytes(name ? name : "", value ? value : ""));
  return no_reply(c, SMFIP_NR_HDR);
}

sfsistat on_eoh(SMFICTX* ctx) {
  Conn& c = ensure_conn(ctx);
  c.session->add_message_bytes("\r\n");
  return no_reply(c, SMFIP_NR_EOH);
}

sfsistat on_body(SMFICTX* ctx, unsigned char* data, size_t len) {
  Conn& c = ensure_conn(ctx);
  c.session->add_message_bytes(std::string_view(reinterpret_cast<const char*>(data), len));
  return no_reply(c, SMFIP_NR_BODY);
}

// The message changes of hook.dot, as libmilter calls; false on a failure.
bool apply_changes(SMFICTX* ctx, const std::vector<MessageChange>& changes, bool& discard, const std::string& id) {
  bool ok = true;
  auto check = [&](int rc, const char* what) {
    if (rc == MI_SUCCESS) return;
    log::warning("session={} milter: {} failed (did the MTA allow the action?)", id, what);
    ok = false;
  };
  for (const MessageChange& ch : changes) {
    std::string value = milter_header_value(ch.value);
    char* name = const_cast<char*>(ch.name.c_str());
    switch (ch.kind) {
      case MessageChange::Kind::AddHeader: check(smfi_addheader(ctx, name, value.data()), "smfi_addheader"); break;
      case MessageChange::Kind::InsertHeader:
        check(smfi_insheader(ctx, static_cast<int>(ch.index), name, value.data()), "smfi_insheader");
        break;
      case MessageChange::Kind::ChangeHeader:
        check(smfi_chgheader(ctx, name, static_cast<int>(ch.index), ch.erase ? nullptr : value.data()),
              "smfi_chgheader");
        break;
      case MessageChange::Kind::AddRcpt: {
        std::string a = "<" + ch.value + ">";
        if (ch.name.empty()) {
          check(smfi_addrcpt(ctx, a.data()), "smfi_addrcpt");
        } else {  // ESMTP arguments of the new recipient
          check(smfi_addrcpt_par(ctx, a.data(), const_cast<char*>(ch.name.c_str())), "smfi_addrcpt_par");
        }
        break;
      }
      case MessageChange::Kind::DelRcpt: {
        std::string a = "<" + ch.value + ">";
        check(smfi_delrcpt(ctx, a.data()), "smfi_delrcpt");
        break;
      }
      case MessageChange::Kind::ChangeFrom: {
        std::string a = "<" + ch.value + ">";
        check(smfi_chgfrom(ctx, a.data(), nullptr), "smfi_chgfrom");
        break;
      }
      case MessageChange::Kind::ReplaceBody:
        check(smfi_replacebody(ctx, reinterpret_cast<unsigned char*>(const_cast<char*>(ch.value.data())),
                               static_cast<int>(ch.value.size())),
              "smfi_replacebody");
        break;
      case MessageChange::Kind::Quarantine:
        check(smfi_quarantine(ctx, const_cast<char*>(ch.value.c_str())), "smfi_quarantine");
        break;
      case MessageChange::Kind::Discard: discard = true; break;
    }
  }
  return ok;
}

void reset_transaction(MilterSession& s) {
  if (s.capabilities().events.has(EventKind::Reset)) {
    SessionEvent e;
    e.kind = EventKind::Reset;
    s.notify(std::move(e));
  }
  s.end_transaction();
}

sfsistat on_eom(SMFICTX* ctx) {
  Conn& c = ensure_conn(ctx);
  MilterSession& s = *c.session;
  sfsistat status = SMFIS_CONTINUE;
  if (s.capabilities().events.has(EventKind::EndOfMessage)) {
    s.flush_message();
    SessionEvent e;
    e.kind = EventKind::EndOfMessage;
    e.message_size = s.message_size();
    // smfi_progress keeps the MTA waiting while a long hook runs.
    const std::optional<Decision> d = s.ask(std::move(e), [ctx] { smfi_progress(ctx); });
    const bool refused = !d || (d->action == Decision::Action::Reply && d->reply.code >= 400);
    bool discard = false;
    if (!refused && !apply_changes(ctx, d->changes, discard, s.id())) {
      status = SMFIS_TEMPFAIL;  // half-applied changes must not be delivered
    } else {
      status = discard ? SMFIS_DISCARD : apply_reply(ctx, d);
    }
  }
  reset_transaction(s);
  return status;
}

sfsistat on_abort(SMFICTX* ctx) {
  if (Conn* c = conn_of(ctx)) reset_transaction(*c->session);
  return SMFIS_CONTINUE;
}

sfsistat on_close(SMFICTX* ctx) {
  Conn* c = conn_of(ctx);
  if (c) {
    c->session->close();
    delete c;
    smfi_setpriv(ctx, nullptr);
  }
  return SMFIS_CONTINUE;
}

sfsistat on_unknown(SMFICTX* ctx, const char* line) {
  Conn& c = ensure_conn(ctx);
  MilterSession& s = *c.session;
  if (!s.capabilities().events.has(EventKind::Unknown)) return no_reply(c, SMFIP_NR_UNKN);
  SessionEvent e;
  e.kind = EventKind::Unknown;
  e.input = line ? line : "";
  e.argument = e.input;
  return apply_reply(ctx, s.ask(std::move(e)));
}

// Connects to our own milter socket ("inet:PORT@HOST", "inet6:PORT@HOST",
// "unix:PATH" / "local:PATH"); the fd, or -1.
int wake_listener(const std::string& spec) {
  const std::size_t colon = spec.find(':');
  const std::string kind = colon == std::string::npos ? "unix" : spec.substr(0, colon);
  const std::string rest = colon == std::string::npos ? spec : spec.substr(colon + 1);
  if (kind == "unix" || kind == "local") {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (rest.size() >= sizeof sun.sun_path) return -1;
    std::memcpy(sun.sun_path, rest.c_str(), rest.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  const std::size_t at = rest.find('@');
  const std::string port = rest.substr(0, at);
  std::string host = at == std::string::npos ? (kind == "inet6" ? "::1" : "127.0.0.1") : rest.substr(at + 1);
  if (host == "0.0.0.0" || host == "*" || host.empty()) host = "127.0.0.1";
  if (host == "::") host = "::1";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) return -1;
  const int fd = ::socket(res->ai_family, SOCK_STREAM, 0);
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    ::close(fd);
    freeaddrinfo(res);
    return -1;
  }
  freeaddrinfo(res);
  return fd;
}

}  // namespace

std::string start_milter(Runtime& runtime, const MilterConfig& config) {
  g_runtime = &runtime;
  g_socket = config.socket;
  static smfiDesc desc{};
  desc.xxfi_name = const_cast<char*>("mailhook");
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT | SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT |
                    SMFIF_CHGFROM | SMFIF_CHGBODY | SMFIF_QUARANTINE;
  desc.xxfi_connect = on_connect;
  desc.xxfi_helo = on_helo;
  desc.xxfi_envfrom = on_envfrom;
  desc.xxfi_envrcpt = on_envrcpt;
  desc.xxfi_header = on_header;
  desc.xxfi_eoh = on_eoh;
  desc.xxfi_body = on_body;
  desc.xxfi_eom = on_eom;
  desc.xxfi_abort = on_abort;
  desc.xxfi_close = on_close;
  desc.xxfi_unknown = on_unknown;
  desc.xxfi_data = on_data;
  desc.xxfi_negotiate = on_negotiate;
  if (smfi_register(desc) != MI_SUCCESS) return "--milter: smfi_register failed";
  if (smfi_setconn(g_socket.data()) != MI_SUCCESS) return "--milter " + g_socket + ": not a milter socket";
  smfi_settimeout(config.timeout_s);
  if (smfi_opensocket(true) != MI_SUCCESS) {
    return "--milter " + g_socket + ": cannot listen (expected inet:PORT@HOST, inet6:PORT@HOST or unix:PATH; "
           "is the address in use?)";
  }
  g_thread = std::thread([] {
    if (smfi_main() != MI_SUCCESS) log::error("milter: smfi_main ended with an error");
    g_main_done.store(true);
  });
  return "";
}

void stop_accepting() {
  if (!g_thread.joinable()) return;
  // smfi_stop waits for the listener's lock, which the listener holds
  // through a 5-second poll; connections of our own wake the poll so the
  // stop lands now. They end at once (EOF before negotiation).
  std::thread stopper([] { smfi_stop(); });
  for (int i = 0; i < 100 && !g_main_done.load(); ++i) {
    const int fd = wake_listener(g_socket);
    if (fd < 0) break;  // the listening socket is closed
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stopper.join();
}

void stop_milter() {
  if (!g_thread.joinable()) return;
  MilterSession::stop_all();
  g_thread.join();
}

}  // namespace mailhook::policyd::milter
