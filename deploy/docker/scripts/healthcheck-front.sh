#!/bin/sh
# HEALTHCHECK of the front image: an SMTP session on the front's own listen
# address (220 greeting, NOOP 250, QUIT); exit 0 only when it goes through.
# With --policy-failure tempfail (the default) a front that cannot reach
# policyd greets 421, so this also fails while policyd is down.
#   MAILHOOK_HEALTH_ADDR   address to check (default: MAILHOOK_LISTEN, a
#                          wildcard host replaced by loopback; else 127.0.0.1:2525)
#   MAILHOOK_HEALTH_TIMEOUT_MS  default 3000
set -eu
bin_dir=${MAILHOOK_BIN_DIR:-$(dirname "$0")}
addr=${MAILHOOK_HEALTH_ADDR:-${MAILHOOK_LISTEN:-0.0.0.0:2525}}
case "$addr" in
  0.0.0.0:*) addr="127.0.0.1:${addr#0.0.0.0:}" ;;
  "[::]:"*) addr="[::1]:${addr#\[::\]:}" ;;
esac
exec "$bin_dir/mailhook-probe" smtp "$addr" --timeout-ms "${MAILHOOK_HEALTH_TIMEOUT_MS:-3000}"
