#!/bin/sh
# HEALTHCHECK of the policyd image: grpc.health.v1 Check on policyd's own
# listen address; exit 0 only when policyd answers SERVING.
#   MAILHOOK_HEALTH_ADDR   address to check (default: MAILHOOK_LISTEN, a
#                          wildcard host replaced by loopback; else 127.0.0.1:7070)
#   MAILHOOK_HEALTH_TIMEOUT_MS  default 3000
set -eu
bin_dir=${MAILHOOK_BIN_DIR:-$(dirname "$0")}
addr=${MAILHOOK_HEALTH_ADDR:-${MAILHOOK_LISTEN:-0.0.0.0:7070}}
# policyd listens on every address; ask it on loopback.
case "$addr" in
  0.0.0.0:*) addr="127.0.0.1:${addr#0.0.0.0:}" ;;
  "[::]:"*) addr="[::1]:${addr#\[::\]:}" ;;
esac
exec "$bin_dir/mailhook-probe" grpc "$addr" --timeout-ms "${MAILHOOK_HEALTH_TIMEOUT_MS:-3000}"
