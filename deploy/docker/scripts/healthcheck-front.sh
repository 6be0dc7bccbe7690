#!/bin/sh
# HEALTHCHECK of the front image: GET /readyz on the front's --metrics
# listener (MAILHOOK_METRICS). Ready = policyd reachable and serving, asked
# with grpc.health on the policy channel: no SMTP session, no hook.accept,
# no PTR lookup, no log line; a policy that refuses loopback cannot take the
# front out of its load balancer. Exit 0 only on 200.
#   MAILHOOK_HEALTH_METRICS  the --metrics address (default: MAILHOOK_METRICS,
#                            a wildcard host replaced by loopback)
#   MAILHOOK_HEALTH_PATH     /readyz (default) or /healthz (liveness: the loop answers)
#   MAILHOOK_HEALTH_TIMEOUT_MS  default 3000
# Without --metrics the old SMTP probe runs (220, NOOP, QUIT on
# MAILHOOK_HEALTH_ADDR, default MAILHOOK_LISTEN): it opens a policy session.
set -eu
bin_dir=${MAILHOOK_BIN_DIR:-$(dirname "$0")}
timeout=${MAILHOOK_HEALTH_TIMEOUT_MS:-3000}
loopback() {
  case "$1" in
    0.0.0.0:*) echo "127.0.0.1:${1#0.0.0.0:}" ;;
    "[::]:"*) echo "[::1]:${1#\[::\]:}" ;;
    *) echo "$1" ;;
  esac
}
metrics=${MAILHOOK_HEALTH_METRICS:-${MAILHOOK_METRICS:-}}
if [ -n "$metrics" ]; then
  exec "$bin_dir/mailhook-probe" http "$(loopback "$metrics")${MAILHOOK_HEALTH_PATH:-/readyz}" --timeout-ms "$timeout"
fi
addr=$(loopback "${MAILHOOK_HEALTH_ADDR:-${MAILHOOK_LISTEN:-0.0.0.0:2525}}")
exec "$bin_dir/mailhook-probe" smtp "$addr" --timeout-ms "$timeout"
