// The front's Prometheus metrics, registered once in main(); connections
// update them lock-free. Names are mailhook_front_*.
#pragma once

#include <array>

#include "mailcore/telemetry/metrics.h"

namespace mailhook::front {

struct FrontMetrics {
  explicit FrontMetrics(telemetry::Registry& r)
      : sessions_total(r.counter("mailhook_front_sessions_total", "SMTP sessions accepted")),
        sessions_open(r.gauge("mailhook_front_sessions_open", "SMTP sessions open now")),
        replies{&r.counter("mailhook_front_replies_total", "SMTP replies sent, by class", "class=\"2xx\""),
                &r.counter("mailhook_front_replies_total", "SMTP replies sent, by class", "class=\"3xx\""),
                &r.counter("mailhook_front_replies_total", "SMTP replies sent, by class", "class=\"4xx\""),
                &r.counter("mailhook_front_replies_total", "SMTP replies sent, by class", "class=\"5xx\"")},
        policy_failures(r.counter("mailhook_policy_failures_total",
                                  "events answered by --policy-failure because policyd was down or slow")),
        policy_seconds(r.histogram("mailhook_front_policy_seconds", "policy round trip per event")),
        spooled(r.counter("mailhook_front_messages_total", "messages delivered", "delivery=\"spool\"")),
        relayed(r.counter("mailhook_front_messages_total", "messages delivered", "delivery=\"relay\"")),
        spooled_bytes(r.counter("mailhook_front_message_bytes_total", "octets delivered", "delivery=\"spool\"")),
        relayed_bytes(r.counter("mailhook_front_message_bytes_total", "octets delivered", "delivery=\"relay\"")) {}

  void reply(int code) {
    if (code >= 200 && code < 600) replies[static_cast<std::size_t>(code / 100 - 2)]->add();
  }

  telemetry::Counter& sessions_total;
  telemetry::Gauge& sessions_open;
  std::array<telemetry::Counter*, 4> replies;
  telemetry::Counter& policy_failures;
  telemetry::Histogram& policy_seconds;
  telemetry::Counter& spooled;
  telemetry::Counter& relayed;
  telemetry::Counter& spooled_bytes;
  telemetry::Counter& relayed_bytes;
};

}  // namespace mailhook::front
