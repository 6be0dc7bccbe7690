// The seam between an SMTP connection and policyd: one policy session per
// SMTP session (open, ask, notify, close), and the PolicyLink that opens
// them. Speaks mailcore types only; never names a gRPC or mailhook.v1
// type, so a connection can be driven by any transport (one stream per
// session today, shared multiplexed streams tomorrow, a fake in tests).
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mailcore/event/event.h"

namespace mailhook::front {

using PolicyClock = std::chrono::steady_clock;

// Why a policy conversation could not give an answer.
enum class PolicyFault : std::uint8_t {
  None,         // the answer came in time
  Unavailable,  // policyd unreachable, the session's stream broke, or the deadline passed
  OutOfOrder,   // an answer came that was not the awaited one (a policyd bug)
};

// What opening a session brought: policyd's capabilities and its connect
// decision, or the failure.
struct PolicyOpening {
  PolicyFault fault = PolicyFault::None;
  Capabilities capabilities;  // fault None only
  Decision decision;          // fault None only: the connect decision
  // fault != None: why, in an administrator's words, escaped ("policy
  // daemon 127.0.0.1:7001 unreachable: connection refused", "... gave no
  // answer within --policy-timeout 2000ms"). Never holds client bytes.
  std::string failure;
};

// The answer to one event that wants a decision.
struct PolicyAnswer {
  PolicyFault fault = PolicyFault::None;
  Decision decision;    // fault None only; decision.seq is the event's seq
  std::string failure;  // fault != None: as PolicyOpening::failure
};

// One SMTP session's policy conversation. Every call comes from the
// executor the session was opened for (the connection's thread), one at
// a time; ask() is awaited before the next ask(). After a fault the
// session is finished: later asks answer the same fault at once, and
// notifies are dropped. Implementations never block that thread.
class PolicySession {
 public:
  virtual ~PolicySession() = default;

  // Starts the session (SessionStart: who connected). Retrying a transport
  // that broke before policyd answered is the implementation's business;
  // `deadline` covers every attempt.
  virtual asio::awaitable<PolicyOpening> open(SessionStart start, PolicyClock::time_point deadline) = 0;
  // Sends an event that wants a decision (event.wants_reply) and awaits
  // the decision with the same seq until `deadline`.
  virtual asio::awaitable<PolicyAnswer> ask(SessionEvent event, PolicyClock::time_point deadline) = 0;
  // Sends an event that wants no decision (message chunk, reset, TLS,
  // close...); in order with the asks. Never waits.
  virtual void notify(SessionEvent event) = 0;

  // Pipelining (RFC 2920): whether send_ahead() may be used, i.e. this
  // transport writes a batch at once (the per-call path does not: false).
  // Whether policyd honours Event.speculative is the opening's capability.
  virtual bool batches() const { return false; }
  // Sends `events` in one write, in order: the first as asked, the others
  // marked speculative (each wants a decision). Then each decision is
  // awaited in order with decision(); no other ask may come between.
  virtual void send_ahead(std::vector<SessionEvent> events) { (void)events; }
  // The decision on an event send_ahead() sent (seq `seq`), until
  // `deadline`; a fault finishes the session as for ask().
  virtual asio::awaitable<PolicyAnswer> decision(std::uint64_t seq, PolicyClock::time_point deadline) {
    (void)deadline;
    co_return PolicyAnswer{.fault = PolicyFault::OutOfOrder, .decision = {.seq = seq}, .failure = "no events sent ahead"};
  }
  // No more events: policyd ends the session after what was sent.
  virtual void close() = 0;
  // Abandons the session at once (the connection is being destroyed);
  // policyd sees the session end as cancelled.
  virtual void abort() = 0;
};

// Opens policy sessions; one per front, shared by every connection and
// thread (thread-safe). `executor` is the connection's: completions of
// the session resume coroutines there.
class PolicyLink {
 public:
  virtual ~PolicyLink() = default;
  virtual std::unique_ptr<PolicySession> session(asio::any_io_executor executor) = 0;
};

}  // namespace mailhook::front
