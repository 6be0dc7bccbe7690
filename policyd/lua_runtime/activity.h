// policyd's side of the mail log: one line per transaction and one per
// session, built from the events a session saw and the decisions it
// returned, so it reads the same whatever dialect the scripts use. A code
// is what the policy answered; "-" means the policy left the reply to the
// front (or MTA). Key names as in docs/logging.md (the refusal lines are
// refusal_log.h's). The transaction line ends with the sender
// authentication the scripts checked (spf=, dkim=, dmarc=). Also feeds
// the reply counters. Never touches Lua.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "mailcore/event/event.h"
#include "mailcore/telemetry/decision_log.h"
#include "policyd/lua_runtime/runtime_metrics.h"

namespace mailhook::policyd {

class ActivityLog {
 public:
  // `auth`: the session's SessionContext::auth, which the log reads and
  // clears at each transaction's end; it outlives the log.
  ActivityLog(const SessionStart& start, RuntimeMetrics& metrics, log::AuthResults& auth);

  // Before each event's hooks run: an event of a new transaction ends the
  // open one's line first, so what the new MAIL's hook checks (spf.check
  // in hook.mail) goes on the new transaction's line.
  void before(const SessionEvent& e);
  // After each event; `decision` when the event wanted one.
  void record(const SessionEvent& e, const std::optional<Decision>& decision);
  // The session ended (stream closed or MTA disconnected).
  void session_ended();

 private:
  void transaction_ended();
  bool starts_transaction(const SessionEvent& e) const;

  void note_client(const ClientFacts& c);

  std::string session_id_, client_, helo_, auth_user_, mta_queue_id_;
  bool milter_ = false;
  RuntimeMetrics& metrics_;
  log::AuthResults& auth_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  int transactions_ = 0;
  // The open transaction.
  std::string transaction_id_, sender_, mail_code_, data_code_, eom_code_;
  std::vector<std::string> rcpts_;  // "<addr>:code", escaped; at most kMaxRecipients
  std::size_t changes_ = 0;
  std::uint64_t size_ = 0;
  std::size_t rcpts_cut_ = 0;  // recipients past kMaxRecipients, counted only
};

}  // namespace mailhook::policyd
