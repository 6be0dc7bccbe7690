// policyd's Prometheus metrics (names mailhook_policyd_*): sessions,
// replies by hook, script and class (which rule refuses how much), shadow
// replies by script, per hook its latency, errors and overruns, DNS and kv.
// Registered once per Runtime (per-script series when a generation loads);
// updated lock-free from the workers. Label values are hooks, scripts and
// fixed words: never a value a client sent.
#pragma once

#include <array>
#include <chrono>
#include <string>

#include "mailcore/event/event.h"
#include "mailcore/telemetry/metrics.h"
#include "policyd/lua_runtime/context.h"

namespace mailhook::policyd {

struct RuntimeMetrics {
  static constexpr std::size_t kPhases = static_cast<std::size_t>(kLastHookPhase) + 1;

  explicit RuntimeMetrics(telemetry::Registry& r);

  // Events left to the default reply (replies are counted by reply()).
  void decision(const Decision& d) {
    if (d.action == Decision::Action::Continue) defaults.add();
  }
  // Registers the reply series of every hook each script of `g` defines
  // (all four classes, so rate() sees the first refusal); before `g` serves.
  void register_scripts(Generation& g);
  // A reply hook.<phase> of script `script` decided (or, for a shadow
  // script, would have sent).
  void reply(const Generation& g, std::size_t script, HookPhase phase, int code);
  // kv (Redis): a command sent, and how it ended.
  enum class KvCommand : std::uint8_t { Get, Set, Incr, Expire, Del };
  void kv_sent(KvCommand c) { kv_calls_[static_cast<std::size_t>(c)]->add(); }
  void kv_answered(KvCommand c, bool error, std::chrono::steady_clock::duration took);
  // A DNS answer from the network (not the cache): its outcome and latency.
  // `rcode` is a dns::Rcode (policyd/dns/message.h).
  void dns_answer(int rcode, std::chrono::steady_clock::duration took);

  telemetry::Histogram& hook_seconds(HookPhase p) { return *hook_seconds_[static_cast<std::size_t>(p)]; }
  telemetry::Counter& hook_errors(HookPhase p) { return *hook_errors_[static_cast<std::size_t>(p)]; }
  telemetry::Counter& hook_overruns(HookPhase p) { return *hook_overruns_[static_cast<std::size_t>(p)]; }

  telemetry::Counter& sessions_total;
  telemetry::Gauge& sessions_open;
  telemetry::Counter& defaults;
  telemetry::Counter& message_bytes;  // bytes received for content hooks and hook.dot(path)
  telemetry::Counter& dns_queries;
  telemetry::Counter& dns_cache_hits;
  std::array<telemetry::Counter*, 6> dns_outcomes;  // NOERROR NXDOMAIN SERVFAIL REFUSED TIMEOUT OTHER
  telemetry::Histogram& dns_seconds;

 private:
  std::array<telemetry::Histogram*, kPhases> hook_seconds_{};
  std::array<telemetry::Counter*, kPhases> hook_errors_{};
  std::array<telemetry::Counter*, kPhases> hook_overruns_{};
  telemetry::Registry& registry_;
  std::array<telemetry::Counter*, 5> kv_calls_{};
  std::array<telemetry::Counter*, 5> kv_errors_{};
  telemetry::Histogram& kv_seconds_;
};

}  // namespace mailhook::policyd
