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
#include "policyd/lua_runtime/runtime_options.h"

namespace mailhook::policyd {

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
