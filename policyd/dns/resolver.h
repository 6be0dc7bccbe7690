// Resolver: one c-ares channel on one worker's Asio loop (ARCHITECTURE
// pattern 11). c-ares says which sockets to watch through sock_state_cb;
// the loop waits on them and on c-ares' next timeout and calls
// ares_process_fd. Queries complete through a callback on the worker's
// thread, from inside c-ares: callers store the answer and schedule their
// own work, they never resume Lua there. Never blocks; never touches Lua.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "policyd/dns/message.h"

namespace mailhook::policyd::dns {

// No defaults here: RuntimeConfig's (lua_runtime/runtime_options.h), which
// the --dns-* flags take, are the only ones; the runtime fills every field.
struct ResolverConfig {
  std::string servers;                    // "ip[:port],…"; empty: /etc/resolv.conf
  std::chrono::milliseconds timeout{};    // per query
  std::size_t cache_entries{};            // answers kept for their TTL; 0: none
  // SO_RCVBUF of c-ares' sockets (--dns-receive-buffer), bytes; 0: the
  // system's default. Answers that arrive while the worker runs Lua wait
  // here; a full buffer drops them and c-ares asks again a round later.
  int receive_buffer{};
};

struct Answer {
  int rcode = kErrno;   // the server's RCODE, or kErrno / kTimeout
  Message message;      // the parsed response when one came
  std::string error;    // why, for kErrno / kTimeout (logs)
};

class Resolver {
 public:
  using Callback = std::function<void(Answer)>;

  // nullptr and `error` when the channel cannot be made (bad --dns-server).
  static std::unique_ptr<Resolver> create(asio::io_context& io, const ResolverConfig& config, std::string& error);
  // Checks --dns-server without a loop: "" or the error.
  static std::string check(const ResolverConfig& config);

  virtual ~Resolver() = default;

  // Sends one query (recursion desired). `done` runs exactly once on the
  // loop's thread, unless the resolver is destroyed first.
  virtual void query(std::string_view name, int rclass, int type, Callback done) = 0;
  // An answer still fresh in the cache (answers from query() are kept
  // there for their TTL); callers ask first and need not wait.
  virtual std::optional<Answer> cached(std::string_view name, int rclass, int type) = 0;

  // Queries sent and not yet answered.
  virtual std::size_t in_flight() const = 0;
};

}  // namespace mailhook::policyd::dns
