// The policy runtime: N worker threads, each owning one master lua_State
// that loaded the scripts, each SMTP session a Lua thread (coroutine) of
// one worker. This header is the whole surface the transports (gRPC
// server, milter adapter) see: SessionStart/SessionEvent in, Capabilities
// and Decisions out. No lua_State* crosses it. Thread-safe; never blocks
// the caller beyond posting to a worker's queue.
#pragma once

#include <asio/any_io_executor.hpp>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mailcore/event/event.h"
#include "mailcore/telemetry/metrics.h"

namespace mailhook::policyd {

namespace dns {
class FakeDns;
}
namespace map {
class MapStore;
}

class ScriptClock;  // script_clock.h

struct RuntimeConfig {
  std::vector<std::filesystem::path> scripts;     // chained in this order
  std::string dialect = "auto";                   // --dialect: auto, smtpe, smtpf, qpsmtpd, vpop3
  int workers = 2;                                // Lua worker threads
  std::chrono::milliseconds hook_timeout{5000};   // per hook call
  bool hook_error_tempfail = false;               // --hook-error tempfail: a script error answers 451 4.3.0
  std::size_t lua_memory_bytes = 256u << 20;      // heap cap per worker state
  std::filesystem::path spool_dir;                // message temp files
  std::string dns_servers;                        // "ip[:port],…"; empty: /etc/resolv.conf
  std::chrono::milliseconds dns_timeout{5000};    // per DNS query
  std::size_t dns_cache_entries = 10000;          // per worker; 0: no cache
  int dns_receive_buffer = 1 << 20;               // --dns-receive-buffer: SO_RCVBUF of the resolver's sockets
  bool ptr_lookup = true;                         // resolve client.host when not given
  unsigned spf_max_dns_lookups = 10;              // --spf-max-dns-lookups: spf.check's default
  unsigned spf_max_void_lookups = 2;              // --spf-max-void-lookups
  std::chrono::seconds spf_timeout{20};           // --spf-timeout: one whole spf.check
  std::string kv_address;                         // --kv IP:PORT of Redis; empty: kv.* answer an error
  std::chrono::milliseconds kv_timeout{1000};     // per kv command
  std::shared_ptr<dns::FakeDns> fake_dns;         // --test: answers from a table, no network
  std::shared_ptr<ScriptClock> clock;             // --test: the case file's clock; nullptr: the system clock
  bool shadow = false;                            // --shadow: every script's replies are logged, not sent
  std::vector<std::filesystem::path> shadow_scripts;  // --shadow-script: run first, logged, never sent
  std::vector<std::string> trace;                 // --trace CIDR: sessions whose every event and hook is logged
  telemetry::Registry* registry = nullptr;        // --metrics; nullptr: kept private
  // The sandbox's grants (docs/lua-api.md "What a script may touch").
  std::vector<std::filesystem::path> lua_read_dirs;   // --lua-read-dir
  std::vector<std::filesystem::path> lua_write_dirs;  // --lua-write-dir: read, write, remove, rename
  std::string lua_path;                           // --lua-path: require's "DIR/?.lua;…"; empty: nothing from disk
  std::vector<std::string> lua_env;               // --lua-env: names os.getenv answers
  std::chrono::milliseconds load_timeout{30000};  // --load-timeout: all scripts' top-level code
  std::shared_ptr<map::MapStore> map_store;       // map.file's parsed files; the runtime makes one
  std::size_t dkim_max_signatures = 8;            // --dkim-max-signatures: per dkim.verify, the rest get policy
};

// Receives a session's answers. Called on the session's worker thread,
// in event order; implementations must not block (post, queue, return).
class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  // Exactly once, first: what the scripts listen to, and the decision on
  // the connection (hook.accept), seq 0.
  virtual void opened(Capabilities capabilities, Decision connect) = 0;
  // Once per event that wants_reply, in order.
  virtual void decided(Decision decision) = 0;
  // Once per event posted, after it was handled (after decided()): a
  // transport that bounds the events it queues reads on (flow control).
  virtual void handled() {}
};

// A session's handle for its transport. Methods post to the worker.
class Session {
 public:
  virtual ~Session() = default;
  // One SMTP event; events are handled strictly in the order posted.
  virtual void post(SessionEvent event) = 0;
  // The transport is gone (stream ended, MTA disconnected): run hook.close
  // if the CLOSE event never came, drop temp files, free the Lua thread.
  // No observer call happens after close() returns... or shortly after:
  // the observer is kept alive by the session until then.
  virtual void close() = 0;
};

class Runtime {
 public:
  virtual ~Runtime() = default;

  // Loads the scripts in every worker and starts each worker's DNS
  // resolver. On failure returns nullptr and sets `error` to a message
  // naming file and line (or the bad --dns-server).
  static std::unique_ptr<Runtime> create(const RuntimeConfig& config, std::string& error);

  // --check: loads the scripts once in a fresh state; "" when fine, else
  // the error naming file and line.
  static std::string check(const RuntimeConfig& config);

  // Starts a session on the least busy worker. The observer's opened()
  // follows asynchronously.
  virtual std::shared_ptr<Session> open(SessionStart start, std::shared_ptr<SessionObserver> observer) = 0;

  // For a transport that runs its own I/O on the session's worker thread
  // (the milter server), so that an event and its decision never cross
  // threads: the worker open() would pick now, that worker's executor, and
  // open() on it. The observer is then called on that executor's thread.
  virtual std::size_t least_busy_worker() const = 0;
  virtual asio::any_io_executor worker_executor(std::size_t worker) = 0;
  virtual std::shared_ptr<Session> open_on(std::size_t worker, SessionStart start,
                                           std::shared_ptr<SessionObserver> observer) = 0;

  // SIGHUP: loads the scripts anew. New sessions get the new code, open
  // sessions finish on the old. On failure nothing changes and the error
  // (file and line) is returned; "" on success. Blocks the caller (the
  // signal thread) until every worker has swapped.
  virtual std::string reload() = 0;

  // SIGHUP with the config file read anew: the same, with the script list,
  // --shadow/--shadow-script, --dialect, --hook-timeout, --lua-memory,
  // --load-timeout, the --spf-* limits and the sandbox grants taken from `next` (what a
  // worker's Lua state is made of). The rest of `next` is ignored: it
  // takes a restart. On failure nothing changes.
  virtual std::string reload(const RuntimeConfig& next) = 0;

  // What the current scripts listen to (the milter adapter negotiates
  // with it before a session opens). Thread-safe.
  virtual Capabilities capabilities() const = 0;

  // Sessions open right now (for drain).
  virtual std::size_t open_sessions() const = 0;

  // Readiness (/readyz): posts a no-op to every worker; `answered` runs
  // once, on the first worker whose loop ran it (a worker stuck in a hook
  // answers after --hook-timeout at most). Never runs Lua; never blocks.
  virtual void ping_workers(std::function<void()> answered) = 0;

  // Stops the workers after their queues are empty; joins the threads.
  virtual void stop() = 0;
};

}  // namespace mailhook::policyd
