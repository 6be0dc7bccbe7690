// The per-worker Lua generation (one master lua_State with the scripts
// loaded) and the per-session context the Lua modules read through
// `client`, `message`, `syslog`. Only policyd/lua_runtime, lua_api and
// dialects include this; everything here runs on one worker thread.
#pragma once

#include <lua.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mailcore/event/event.h"
#include "mailcore/telemetry/decision_log.h"
#include "policyd/map/map_store.h"
#include "mailcore/telemetry/metrics.h"
#include "policyd/dialects/hook_phase.h"

namespace mailhook::policyd {

// Lua's allocator with a cap: the allocation past `cap` fails, only it.
struct CappedAllocator {
  std::size_t used = 0;
  std::size_t cap = 0;
  static void* alloc(void* ud, void* ptr, std::size_t osize, std::size_t nsize);
};

struct SessionContext;
struct RuntimeMetrics;
class ScriptClock;  // script_clock.h: the wall clock scripts see
struct DnsSession;  // lua_api/dns.cc: the session's queries and answers
struct HostLookup;  // client_host.cc: the PTR lookup of client.host
struct KvCall;      // lua_api/kv.cc: the kv command a hook waits for
struct DmarcLookup; // lua_api/dmarc.cc: the DMARC record lookup a hook waits for
class Waker;        // hook_runner.h: what a suspended hook waits on
namespace dns {
class Resolver;
}
namespace kv {
class RedisClient;
}

// One loaded set of scripts in one master state. Replaced on reload;
// sessions keep the generation they started on alive until they end.
struct Generation {
  CappedAllocator allocator;
  lua_State* L = nullptr;
  std::vector<int> env_refs;          // per script environment, registry refs
  std::vector<std::string> script_names;
  std::vector<std::string> script_dialects;  // "smtpe", "smtpf", per script
  std::vector<bool> script_shadow;           // --shadow / --shadow-script: replies logged, never sent
  std::vector<bool> script_reads_msg_file;   // its text names client.msg_file
  // Per script, per hook it defines, per reply class (2xx..5xx): its series
  // of mailhook_policyd_replies_total (or _shadow_replies_total for a
  // shadow script); nullptr for hooks the script does not define
  // (RuntimeMetrics::register_scripts, before the generation serves).
  using ReplyCounters = std::array<std::array<telemetry::Counter*, 4>, static_cast<std::size_t>(kLastHookPhase) + 1>;
  std::vector<ReplyCounters> script_replies;
  Capabilities capabilities;
  // From RuntimeConfig (load_generation), whose defaults are the only ones.
  std::chrono::milliseconds hook_timeout{};
  bool hook_error_tempfail = false;     // --hook-error tempfail: an error answers 451 4.3.0
  std::filesystem::path spool_dir;
  // The sandbox's grants, directories canonical (realpath) without a
  // trailing slash (file_grant.cc).
  std::vector<std::string> read_dirs;   // --lua-read-dir, qpsmtpd's config dirs
  std::vector<std::string> write_dirs;  // --lua-write-dir (read too)
  std::string lua_path;                 // --lua-path
  std::vector<std::string> lua_env;     // --lua-env
  std::chrono::milliseconds load_timeout{};
  std::shared_ptr<map::MapStore> map_store;  // map.file snapshots, shared by every worker
  std::vector<map::MapHandle> maps;          // this generation's map.file objects
  unsigned spf_max_dns_lookups{};      // --spf-max-dns-lookups (spf.check's default)
  unsigned spf_max_void_lookups{};     // --spf-max-void-lookups
  std::chrono::seconds spf_timeout{};  // --spf-timeout
  std::size_t dkim_max_signatures{};   // --dkim-max-signatures (lua_api/dkim.cc)
  std::shared_ptr<ScriptClock> clock;   // --test's case clock; nullptr: the system clock (script_clock.h)
  bool loading = false;                 // the scripts' top-level code runs (no session)
  // Set while a hook of a session runs (one at a time per worker).
  SessionContext* current = nullptr;
  std::chrono::steady_clock::time_point deadline;
  bool timed_out = false;

  Generation() = default;
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;
  ~Generation();
};

// Per-session facts and transaction state, owned by the worker.
struct SessionContext {
  SessionStart start;
  Generation* generation = nullptr;
  int thread_ref = LUA_NOREF;        // the session's Lua thread
  lua_State* thread = nullptr;
  HookPhase phase = HookPhase::Accept;
  const SessionEvent* event = nullptr;  // the event being handled
  std::string transaction_id;
  std::string helo;                  // the HELO/EHLO name in effect (client.helo)
  std::string sender;                // MAIL FROM of the transaction (client.sender)
  std::filesystem::path msg_file;
  std::FILE* msg_out = nullptr;
  // Line splitting of message chunks for header/eoh/body hooks.
  std::string partial_line;
  std::string header;                // the header being collected (folded)
  bool in_body = false;
  std::vector<MessageChange> changes;  // from `message` in hook.dot/forward
  // The hook that stopped a content hook's run (header, body, ...): the
  // message gets 451 at its end, and the log names that script.
  std::string poisoned_by;
  HookPhase poisoned_phase = HookPhase::Content;
  // From `mailhook.*` during a hook: sent with the next decision (a hook
  // of an event without a reply, such as hook.eoh, leaves them for the next).
  struct Pending {
    bool disconnect = false;
    std::optional<SessionLimits> limits;
    std::vector<std::string> ehlo_keywords;
  } pending;

  // Set by the runtime when the session opens.
  RuntimeMetrics* metrics = nullptr;
  dns::Resolver* resolver = nullptr;   // the worker's; nullptr: no DNS
  kv::RedisClient* kv = nullptr;       // the worker's; nullptr: no --kv
  std::shared_ptr<Waker> waker;
  bool ptr_lookup = true;              // resolve client.host when empty
  bool host_resolved = false;          // client.host was looked up (or given)
  bool trace = false;                  // --trace matched, or the script set client.trace
  std::shared_ptr<HostLookup> host_lookup;  // while it runs

  // Suspension (ARCHITECTURE pattern 8): a Lua function that must wait for
  // I/O sets `resume_when` and yields; completions store their results and
  // call wake(); the hook runner resumes the hook once resume_when() holds.
  // `aborted`: the session ended while suspended; the hook is dropped.
  std::function<bool()> resume_when;
  bool aborted = false;
  void wake();
  std::shared_ptr<DnsSession> dns;     // created by the first dns.* call
  std::shared_ptr<KvCall> kv_call;     // the kv.* call a hook waits for
  std::shared_ptr<DmarcLookup> dmarc;  // the dmarc.check a hook waits for
  // The script's `session` / `transaction` tables (lua_api/notes.cc):
  // registry refs in generation->L, made on the first write.
  int session_notes = LUA_NOREF;
  int transaction_notes = LUA_NOREF;
  std::vector<std::string> recipients;  // accepted RCPT TO of the transaction (client.recipients)
  // The transaction's spf.check / dkim.verify / dmarc.check results for
  // its log line (activity.h); written by lua_api inside a transaction
  // only, cleared by the log when the transaction ends.
  log::AuthResults auth;
  // The first hook of this event that ran past its limits in a hook whose
  // reply is not sent (header, body...): end of message counts its 451 on it.
  std::optional<std::pair<HookPhase, std::size_t>> overrun_by;
};

// The script's `session` / `transaction` tables (lua_api/notes.cc) are
// freed by the runtime: the transaction's when client.id_trans changes,
// both when the session ends.
void drop_transaction_notes(SessionContext& s);
void drop_session_notes(SessionContext& s);

// The generation of a state (any of its threads).
Generation& generation_of(lua_State* L);
// The session whose hook runs now, or nullptr at load time.
SessionContext* current_session(lua_State* L);

}  // namespace mailhook::policyd
