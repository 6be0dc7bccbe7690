// policyd's Prometheus metrics (names mailhook_policyd_*): sessions,
// decisions by reply class, and per hook its latency, errors and overruns.
// Registered once per Runtime; updated lock-free from the workers.
#pragma once

#include <array>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "mailcore/event/event.h"
#include "mailcore/telemetry/metrics.h"
#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {

struct RuntimeMetrics {
  static constexpr std::size_t kPhases = static_cast<std::size_t>(kLastHookPhase) + 1;

  explicit RuntimeMetrics(telemetry::Registry& r);

  void decision(const Decision& d) {
    if (d.action == Decision::Action::Reply && d.reply.code >= 200 && d.reply.code < 600) {
      replies[static_cast<std::size_t>(d.reply.code / 100 - 2)]->add();
    } else if (d.action == Decision::Action::Continue) {
      defaults.add();
    }
  }
  // A DNS answer from the network (not the cache): its outcome and latency.
  // `rcode` is a dns::Rcode (policyd/dns/message.h).
  void dns_answer(int rcode, std::chrono::steady_clock::duration took);

  telemetry::Histogram& hook_seconds(HookPhase p) { return *hook_seconds_[static_cast<std::size_t>(p)]; }
  // mailhook_policyd_hook_errors_total{script,hook}: a script's errors and
  // malformed replies in one hook; each series registered at its first error.
  telemetry::Counter& hook_errors(std::string_view script, HookPhase p);
  telemetry::Counter& hook_overruns(HookPhase p) { return *hook_overruns_[static_cast<std::size_t>(p)]; }
  telemetry::Counter& shadow_replies(HookPhase p) { return *shadow_replies_[static_cast<std::size_t>(p)]; }

  telemetry::Counter& sessions_total;
  telemetry::Gauge& sessions_open;
  std::array<telemetry::Counter*, 4> replies;
  telemetry::Counter& defaults;
  telemetry::Counter& message_bytes;  // bytes received for content hooks and hook.dot(path)
  telemetry::Counter& dns_queries;
  telemetry::Counter& dns_cache_hits;
  std::array<telemetry::Counter*, 6> dns_outcomes;  // NOERROR NXDOMAIN SERVFAIL REFUSED TIMEOUT OTHER
  telemetry::Histogram& dns_seconds;

 private:
  std::array<telemetry::Histogram*, kPhases> hook_seconds_{};
  telemetry::Registry& registry_;
  std::mutex hook_errors_mu_;  // the workers share the map
  std::map<std::pair<std::string, HookPhase>, telemetry::Counter*, std::less<>> hook_errors_;
  std::array<telemetry::Counter*, kPhases> hook_overruns_{};
  std::array<telemetry::Counter*, kPhases> shadow_replies_{};
};

}  // namespace mailhook::policyd
