#!/bin/sh
# HEALTHCHECK of the policyd image: grpc.health.v1 Check on policyd's own
# listen address; exit 0 only when policyd answers SERVING.
#   MAILHOOK_HEALTH_ADDR   address to check (default: MAILHOOK_LISTEN, a
#                          wildcard host replaced by loopback; else 127.0.0.1:7070)
#   MAILHOOK_HEALTH_TIMEOUT_MS  default 3000
# With mutual TLS on the gRPC port (MAILHOOK_TLS_CERT/KEY/CLIENT_CA set),
# the probe shows a client certificate too; by default policyd's own
# certificate and key (made for server and client auth, as
# deploy/tls/make-link-certs.sh does), checked against the client CA:
#   MAILHOOK_HEALTH_TLS_CA, MAILHOOK_HEALTH_TLS_CERT, MAILHOOK_HEALTH_TLS_KEY
#   MAILHOOK_HEALTH_TLS_NAME   the name policyd's certificate carries, when
#                              it does not list the address checked
set -eu
bin_dir=${MAILHOOK_BIN_DIR:-$(dirname "$0")}
addr=${MAILHOOK_HEALTH_ADDR:-${MAILHOOK_LISTEN:-0.0.0.0:7070}}
# policyd listens on every address; ask it on loopback.
case "$addr" in
  0.0.0.0:*) addr="127.0.0.1:${addr#0.0.0.0:}" ;;
  "[::]:"*) addr="[::1]:${addr#\[::\]:}" ;;
esac
set -- grpc "$addr" --timeout-ms "${MAILHOOK_HEALTH_TIMEOUT_MS:-3000}"
ca=${MAILHOOK_HEALTH_TLS_CA:-${MAILHOOK_TLS_CLIENT_CA:-}}
if [ -n "$ca" ]; then
  set -- "$@" --tls-ca "$ca" --tls-cert "${MAILHOOK_HEALTH_TLS_CERT:-${MAILHOOK_TLS_CERT:-}}" \
    --tls-key "${MAILHOOK_HEALTH_TLS_KEY:-${MAILHOOK_TLS_KEY:-}}"
  if [ -n "${MAILHOOK_HEALTH_TLS_NAME:-}" ]; then set -- "$@" --tls-name "$MAILHOOK_HEALTH_TLS_NAME"; fi
fi
exec "$bin_dir/mailhook-probe" "$@"
