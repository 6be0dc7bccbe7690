// One milter connection: the libmilter thread that runs its callbacks
// turns each into a SessionEvent for the shared Runtime (the same Lua
// workers and hooks as gRPC sessions) and, where the MTA waits for an
// answer, blocks on its own condition variable until the worker decides.
// Only libmilter's connection threads block here, never a Lua worker.
// No libmilter calls: milter_adapter.cc does those.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "mailcore/event/event.h"
#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd::milter {

class MilterSession {
 public:
  MilterSession(Runtime& runtime, Capabilities caps, std::string session_id);
  ~MilterSession();

  const Capabilities& capabilities() const { return caps_; }
  const std::string& id() const { return id_; }
  ClientFacts& facts() { return facts_; }

  // connect: opens the runtime session; the connect decision when a
  // script decides there (else nullopt without waiting).
  std::optional<Decision> open(ClientFacts facts, const std::function<void()>& tick);

  // An event the MTA waits on: posts it and returns the decision
  // (nullopt when the runtime stopped). `tick` runs about every second
  // while waiting (smfi_progress at eom).
  std::optional<Decision> ask(SessionEvent e, const std::function<void()>& tick = {});
  // An event that needs no answer.
  void notify(SessionEvent e);

  // Message bytes for the content hooks (header/eoh/body), buffered and
  // sent in chunks.
  void add_message_bytes(std::string_view bytes);
  void flush_message();
  std::uint64_t message_size() const { return message_size_; }

  // The transaction: a new id at envfrom, none after eom/abort.
  const std::string& begin_transaction();
  void end_transaction();
  const std::string& transaction_id() const { return transaction_id_; }
  std::string helo;  // the HELO/EHLO argument in effect

  // The facts changed (macros of this step): sent with the next event.
  void facts_changed() { facts_dirty_ = true; }

  // close: CLOSE to the scripts, then the runtime session ends.
  void close();

  // The adapter is stopping: every wait returns nullopt.
  static void stop_all();

 private:
  class Inbox;
  SessionEvent stamp(SessionEvent e);

  Runtime& runtime_;
  Capabilities caps_;
  std::string id_;
  ClientFacts facts_;
  bool facts_dirty_ = false;
  std::shared_ptr<Inbox> inbox_;
  std::shared_ptr<Session> session_;
  std::uint64_t seq_ = 0;
  std::uint64_t transactions_ = 0;
  std::string transaction_id_;
  std::string pending_bytes_;
  std::uint64_t message_size_ = 0;
};

}  // namespace mailhook::policyd::milter
