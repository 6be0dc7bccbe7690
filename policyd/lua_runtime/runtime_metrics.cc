// Registration of policyd's metrics.
#include "policyd/lua_runtime/runtime_metrics.h"

#include "policyd/dns/message.h"

namespace mailhook::policyd {
namespace {

std::string label(std::string_view key, std::string_view value) {
  return std::string(key) + "=\"" + std::string(value) + "\"";
}

}  // namespace

RuntimeMetrics::RuntimeMetrics(telemetry::Registry& r)
    : sessions_total(r.counter("mailhook_policyd_sessions_total", "sessions opened by fronts or MTAs")),
      sessions_open(r.gauge("mailhook_policyd_sessions_open", "sessions open now")),
      replies{&r.counter("mailhook_policyd_replies_total", "replies decided by the scripts, by class", label("class", "2xx")),
              &r.counter("mailhook_policyd_replies_total", "replies decided by the scripts, by class", label("class", "3xx")),
              &r.counter("mailhook_policyd_replies_total", "replies decided by the scripts, by class", label("class", "4xx")),
              &r.counter("mailhook_policyd_replies_total", "replies decided by the scripts, by class", label("class", "5xx"))},
      defaults(r.counter("mailhook_policyd_default_replies_total", "events the scripts left to the default reply")),
      message_bytes(r.counter("mailhook_policyd_message_bytes_total",
                              "message bytes received (only when a script takes the message)")),
      dns_queries(r.counter("mailhook_policyd_dns_queries_total", "DNS queries sent by dns.query and client.host")),
      dns_cache_hits(r.counter("mailhook_policyd_dns_cache_hits_total", "DNS answers served from the cache")),
      dns_outcomes{&r.counter("mailhook_policyd_dns_answers_total", "DNS answers by outcome", label("rcode", "NOERROR")),
                   &r.counter("mailhook_policyd_dns_answers_total", "DNS answers by outcome", label("rcode", "NXDOMAIN")),
                   &r.counter("mailhook_policyd_dns_answers_total", "DNS answers by outcome", label("rcode", "SERVFAIL")),
                   &r.counter("mailhook_policyd_dns_answers_total", "DNS answers by outcome", label("rcode", "REFUSED")),
                   &r.counter("mailhook_policyd_dns_answers_total", "DNS answers by outcome", label("rcode", "TIMEOUT")),
                   &r.counter("mailhook_policyd_dns_answers_total", "DNS answers by outcome", label("rcode", "OTHER"))},
      dns_seconds(r.histogram("mailhook_policyd_dns_seconds", "DNS query latency")),
      registry_(r) {
  for (std::size_t i = 1; i < kPhases; ++i) {  // 0 is Load: not a hook
    const std::string hook = label("hook", hook_name(static_cast<HookPhase>(i)));
    hook_seconds_[i] = &r.histogram("mailhook_policyd_hook_seconds", "hook latency, per hook called", hook);
    hook_overruns_[i] = &r.counter("mailhook_policyd_hook_timeouts_total",
                                   "hook calls stopped by --hook-timeout or --lua-memory (451 4.3.0)", hook);
    shadow_replies_[i] = &r.counter("mailhook_policyd_shadow_replies_total",
                                    "replies a shadow script would have sent (--shadow, --shadow-script)", hook);
  }
  hook_seconds_[0] = hook_seconds_[1];
  hook_overruns_[0] = hook_overruns_[1];
  shadow_replies_[0] = shadow_replies_[1];
}

telemetry::Counter& RuntimeMetrics::hook_errors(std::string_view script, HookPhase p) {
  std::lock_guard l(hook_errors_mu_);
  auto key = std::make_pair(std::string(script), p);
  if (auto it = hook_errors_.find(key); it != hook_errors_.end()) return *it->second;
  // A label value escapes '\', '"' and line feeds (exposition format 0.0.4).
  std::string value;
  for (const char c : script) {
    if (c == '\\' || c == '"') value += '\\';
    if (c == '\n') {
      value += "\\n";
      continue;
    }
    value += c;
  }
  telemetry::Counter& c = registry_.counter("mailhook_policyd_hook_errors_total",
                                            "hook calls that raised an error or returned a malformed reply, per "
                                            "script and hook",
                                            "script=\"" + value + "\"," + label("hook", hook_name(p)));
  hook_errors_.emplace(std::move(key), &c);
  return c;
}

void RuntimeMetrics::dns_answer(int rcode, std::chrono::steady_clock::duration took) {
  std::size_t i = 5;  // OTHER
  switch (rcode) {
    case dns::kNoError: i = 0; break;
    case dns::kNxDomain: i = 1; break;
    case dns::kServFail: i = 2; break;
    case dns::kRefused: i = 3; break;
    case dns::kTimeout: i = 4; break;
    default: break;
  }
  dns_outcomes[i]->add();
  dns_seconds.observe(std::chrono::duration<double>(took).count());
}

}  // namespace mailhook::policyd
