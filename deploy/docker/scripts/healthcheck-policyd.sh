#!/bin/sh
# HEALTHCHECK of the policyd image: GET /readyz on policyd's --metrics
# listener (MAILHOOK_METRICS). Ready = the gRPC server serves (not draining)
# and a Lua worker's loop answers; no session, no hook. Exit 0 only on 200.
#   MAILHOOK_HEALTH_METRICS  the --metrics address (default: MAILHOOK_METRICS,
#                            a wildcard host replaced by loopback)
#   MAILHOOK_HEALTH_PATH     /readyz (default) or /healthz (liveness)
#   MAILHOOK_HEALTH_TIMEOUT_MS  default 3000
# Without --metrics: grpc.health.v1 Check on policyd's own listen address
# (MAILHOOK_HEALTH_ADDR, default MAILHOOK_LISTEN); with mutual TLS on the
# gRPC port (MAILHOOK_TLS_CERT/KEY/CLIENT_CA set) the probe shows policyd's
# own certificate (made for server and client auth, as
# deploy/tls/make-link-certs.sh does), checked against the client CA:
#   MAILHOOK_HEALTH_TLS_CA, MAILHOOK_HEALTH_TLS_CERT, MAILHOOK_HEALTH_TLS_KEY
#   MAILHOOK_HEALTH_TLS_NAME   the name policyd's certificate carries, when
#                              it does not list the address checked
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
addr=$(loopback "${MAILHOOK_HEALTH_ADDR:-${MAILHOOK_LISTEN:-0.0.0.0:7070}}")
set -- grpc "$addr" --timeout-ms "$timeout"
ca=${MAILHOOK_HEALTH_TLS_CA:-${MAILHOOK_TLS_CLIENT_CA:-}}
if [ -n "$ca" ]; then
  set -- "$@" --tls-ca "$ca" --tls-cert "${MAILHOOK_HEALTH_TLS_CERT:-${MAILHOOK_TLS_CERT:-}}" \
    --tls-key "${MAILHOOK_HEALTH_TLS_KEY:-${MAILHOOK_TLS_KEY:-}}"
  if [ -n "${MAILHOOK_HEALTH_TLS_NAME:-}" ]; then set -- "$@" --tls-name "$MAILHOOK_HEALTH_TLS_NAME"; fi
fi
exec "$bin_dir/mailhook-probe" "$@"
