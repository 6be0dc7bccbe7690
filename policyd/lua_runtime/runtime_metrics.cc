// Registration of policyd's metrics.
#include "policyd/lua_runtime/runtime_metrics.h"

#include "policyd/dns/message.h"
#include "policyd/lua_runtime/hook_runner.h"

namespace mailhook::policyd {
namespace {

using telemetry::label;

constexpr const char* kRepliesHelp =
    "replies the scripts decided, by hook, script and class (default replies are not counted)";
constexpr const char* kShadowHelp =
    "replies a shadow script would have sent, by hook, script and class (--shadow, --shadow-script)";
constexpr std::array<const char*, 4> kClasses{"2xx", "3xx", "4xx", "5xx"};
constexpr std::array<const char*, 5> kKvCommands{"get", "set", "incr", "expire", "del"};

std::string reply_labels(HookPhase phase, std::string_view script, std::size_t cls) {
  return label("hook", hook_name(phase)) + "," + label("script", script) + "," + label("class", kClasses[cls]);
}

}  // namespace

RuntimeMetrics::RuntimeMetrics(telemetry::Registry& r)
    : sessions_total(r.counter("mailhook_policyd_sessions_total", "sessions opened by fronts or MTAs")),
      sessions_open(r.gauge("mailhook_policyd_sessions_open", "sessions open now")),
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
      registry_(r),
      kv_seconds_(r.histogram("mailhook_policyd_kv_seconds", "kv (Redis) command latency, sent to answer or error")) {
  for (std::size_t c = 0; c < kKvCommands.size(); ++c) {
    kv_calls_[c] = &r.counter("mailhook_policyd_kv_calls_total", "kv (Redis) commands sent, by kv function",
                              label("command", kKvCommands[c]));
    kv_errors_[c] = &r.counter("mailhook_policyd_kv_errors_total",
                               "kv (Redis) commands that failed: connection, error reply or --kv-timeout",
                               label("command", kKvCommands[c]));
  }
  for (std::size_t i = 1; i < kPhases; ++i) {  // 0 is Load: not a hook
    const std::string hook = label("hook", hook_name(static_cast<HookPhase>(i)));
    hook_seconds_[i] = &r.histogram("mailhook_policyd_hook_seconds", "hook latency, per hook called", hook);
    hook_errors_[i] = &r.counter("mailhook_policyd_hook_errors_total",
                                 "hook calls that raised an error or returned a malformed reply", hook);
    hook_overruns_[i] = &r.counter("mailhook_policyd_hook_timeouts_total",
                                   "hook calls stopped by --hook-timeout or --lua-memory (451 4.3.0)", hook);
  }
  hook_seconds_[0] = hook_seconds_[1];
  hook_errors_[0] = hook_errors_[1];
  hook_overruns_[0] = hook_overruns_[1];
}

void RuntimeMetrics::register_scripts(Generation& g) {
  g.script_replies.assign(g.script_names.size(), {});
  for (std::size_t i = 0; i < g.script_names.size(); ++i) {
    const bool shadow = g.script_shadow[i];
    for (std::size_t p = 1; p < kPhases; ++p) {  // 0 is Load: not a hook
      const auto phase = static_cast<HookPhase>(p);
      if (!script_has_hook(g, i, phase)) continue;
      for (std::size_t c = 0; c < kClasses.size(); ++c) {
        g.script_replies[i][p][c] =
            &registry_.counter(shadow ? "mailhook_policyd_shadow_replies_total" : "mailhook_policyd_replies_total",
                               shadow ? kShadowHelp : kRepliesHelp, reply_labels(phase, g.script_names[i], c));
      }
    }
  }
}

void RuntimeMetrics::reply(const Generation& g, std::size_t script, HookPhase phase, int code) {
  if (code < 200 || code >= 600) return;  // the reply validator lets no other through
  const auto cls = static_cast<std::size_t>(code / 100 - 2);
  telemetry::Counter* c = nullptr;
  if (script < g.script_replies.size()) c = g.script_replies[script][static_cast<std::size_t>(phase)][cls];
  if (c == nullptr) {
    // A hook the script set up after loading: registered now, once (the
    // registry's lock; label values still from the script list only).
    const bool shadow = script < g.script_shadow.size() && g.script_shadow[script];
    c = &registry_.counter(shadow ? "mailhook_policyd_shadow_replies_total" : "mailhook_policyd_replies_total",
                           shadow ? kShadowHelp : kRepliesHelp,
                           reply_labels(phase, script < g.script_names.size() ? g.script_names[script] : "-", cls));
  }
  c->add();
}

void RuntimeMetrics::kv_answered(KvCommand c, bool error, std::chrono::steady_clock::duration took) {
  if (error) kv_errors_[static_cast<std::size_t>(c)]->add();
  kv_seconds_.observe(std::chrono::duration<double>(took).count());
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
