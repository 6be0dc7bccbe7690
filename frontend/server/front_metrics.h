// The front's Prometheus metrics, registered once in main(); connections
// update them lock-free. Names are mailhook_front_*. Label values are
// fixed words (outcomes, limits, delivery kinds): never a client value.
#pragma once

#include <array>
#include <cstdint>

#include "mailcore/telemetry/metrics.h"

namespace mailhook::front {

inline constexpr const char* kDeliveryFailuresHelp =
    "messages not delivered, by delivery and the class of the reply the client got: the spool write failed "
    "(452), or the smart host did not take the message";

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
        policy_sent_ahead(r.counter("mailhook_front_policy_events_sent_ahead_total",
                                    "events of pipelined commands sent speculatively with an earlier ask (RFC 2920)")),
        policy_skipped(r.counter("mailhook_front_policy_events_skipped_total",
                                 "events sent ahead that policyd skipped after a decision broke the prediction")),
        spooled(r.counter("mailhook_front_messages_total", "messages delivered", "delivery=\"spool\"")),
        relayed(r.counter("mailhook_front_messages_total", "messages delivered", "delivery=\"relay\"")),
        spooled_bytes(r.counter("mailhook_front_message_bytes_total", "octets delivered", "delivery=\"spool\"")),
        relayed_bytes(r.counter("mailhook_front_message_bytes_total", "octets delivered", "delivery=\"relay\"")),
        tls{&r.counter("mailhook_front_tls_handshakes_total", "STARTTLS handshakes, by outcome", "result=\"ok\""),
            &r.counter("mailhook_front_tls_handshakes_total", "STARTTLS handshakes, by outcome", "result=\"failed\""),
            &r.counter("mailhook_front_tls_handshakes_total", "STARTTLS handshakes, by outcome", "result=\"timeout\"")},
        auth{&r.counter("mailhook_front_auth_total", "AUTH exchanges, by outcome", "result=\"success\""),
             &r.counter("mailhook_front_auth_total", "AUTH exchanges, by outcome", "result=\"failure\""),
             &r.counter("mailhook_front_auth_total", "AUTH exchanges, by outcome", "result=\"canceled\""),
             &r.counter("mailhook_front_auth_total", "AUTH exchanges, by outcome", "result=\"malformed\"")},
        limit_refusals{&r.counter("mailhook_front_connection_limit_refusals_total",
                                  "connections refused with 421 at a connection limit, by limit "
                                  "(total: --max-connections, per_ip: --max-connections-per-ip)",
                                  "limit=\"total\""),
                       &r.counter("mailhook_front_connection_limit_refusals_total",
                                  "connections refused with 421 at a connection limit, by limit "
                                  "(total: --max-connections, per_ip: --max-connections-per-ip)",
                                  "limit=\"per_ip\"")},
        spool_failures(r.counter("mailhook_front_delivery_failures_total", kDeliveryFailuresHelp,
                                 "delivery=\"spool\",class=\"4xx\"")),
        relay_failures{&r.counter("mailhook_front_delivery_failures_total", kDeliveryFailuresHelp,
                                  "delivery=\"relay\",class=\"4xx\""),
                       &r.counter("mailhook_front_delivery_failures_total", kDeliveryFailuresHelp,
                                  "delivery=\"relay\",class=\"5xx\"")} {}

  enum class TlsOutcome : std::uint8_t { Ok, Failed, Timeout };
  enum class AuthOutcome : std::uint8_t { Success, Failure, Canceled, Malformed };
  enum class Limit : std::uint8_t { Total, PerIp };
  void tls_handshake(TlsOutcome o) { tls[static_cast<std::size_t>(o)]->add(); }
  void auth_exchange(AuthOutcome o) { auth[static_cast<std::size_t>(o)]->add(); }
  void limit_refusal(Limit l) { limit_refusals[static_cast<std::size_t>(l)]->add(); }
  void relay_failed(int code) { relay_failures[code >= 500 ? 1 : 0]->add(); }

  void reply(int code) {
    if (code >= 200 && code < 600) replies[static_cast<std::size_t>(code / 100 - 2)]->add();
  }

  telemetry::Counter& sessions_total;
  telemetry::Gauge& sessions_open;
  std::array<telemetry::Counter*, 4> replies;
  telemetry::Counter& policy_failures;
  telemetry::Histogram& policy_seconds;
  telemetry::Counter& policy_sent_ahead;
  telemetry::Counter& policy_skipped;
  telemetry::Counter& spooled;
  telemetry::Counter& relayed;
  telemetry::Counter& spooled_bytes;
  telemetry::Counter& relayed_bytes;
  std::array<telemetry::Counter*, 3> tls;
  std::array<telemetry::Counter*, 4> auth;
  std::array<telemetry::Counter*, 2> limit_refusals;
  telemetry::Counter& spool_failures;
  // The smart host's reply class: 4xx (down, unreachable, full) or 5xx (it refused).
  std::array<telemetry::Counter*, 2> relay_failures;
};

}  // namespace mailhook::front
