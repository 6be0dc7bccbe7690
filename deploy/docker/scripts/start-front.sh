#!/bin/bash
# Entrypoint of the front image: environment variables to flags, then
# exec mailhook-front (so it is PID 1 and gets SIGTERM itself), logging to
# stderr. Arguments given to the script are appended as flags.
#
#   MAILHOOK_LISTEN                  --listen                  SMTP address (default 0.0.0.0:2525;
#                                                              non-root cannot bind 25)
#   MAILHOOK_POLICYD                 --policyd                 host:port, unix:PATH, ipv4:a:p,b:p,
#                                                              dns:///name:port (default 127.0.0.1:7070)
#   MAILHOOK_SPOOL                   --queue-dir               spool directory (default /var/spool/mailhook)
#   MAILHOOK_RELAY                   --smart-host              relay accepted mail to HOST:PORT instead
#   MAILHOOK_HOSTNAME                --hostname                greeting and Received name
#   MAILHOOK_THREADS                 --io-threads              I/O threads (front's default: the machine's cores)
#   MAILHOOK_METRICS                 --metrics                 Prometheus HOST:PORT (off when unset)
#   MAILHOOK_POLICY_FAILURE          --policy-failure          tempfail or accept
#   MAILHOOK_POLICY_TIMEOUT          --policy-timeout          milliseconds
#   MAILHOOK_MAX_MESSAGE_SIZE        --max-message-size        bytes
#   MAILHOOK_MAX_RECIPIENTS          --max-recipients
#   MAILHOOK_MAX_CONNECTIONS         --max-connections
#   MAILHOOK_MAX_CONNECTIONS_PER_IP  --max-connections-per-ip
#   MAILHOOK_SHUTDOWN_GRACE          --drain-timeout           30s, 1m (bare number: seconds)
#   MAILHOOK_TLS_CERT, MAILHOOK_TLS_KEY  --tls-cert, --tls-key  PEM files: offer STARTTLS
#   MAILHOOK_XCLIENT_HOSTS           --xclient-hosts           CIDR list
#   MAILHOOK_POLICYD_TLS_CA, MAILHOOK_POLICYD_TLS_CERT, MAILHOOK_POLICYD_TLS_KEY
#                                    --policyd-tls-ca, --policyd-tls-cert, --policyd-tls-key
#                                    mutual TLS to policyd (all three)
#   MAILHOOK_BIN_DIR                 where mailhook-front is (default: this script's directory)
set -euo pipefail
bin_dir=${MAILHOOK_BIN_DIR:-$(dirname "$0")}

args=(--log-stderr --listen "${MAILHOOK_LISTEN:-0.0.0.0:2525}")
# --queue-dir is unused with a smart host; pass it only without one.
if [ -z "${MAILHOOK_RELAY:-}" ]; then
  args+=(--queue-dir "${MAILHOOK_SPOOL:-/var/spool/mailhook}")
fi

# Each optional variable becomes its flag only when set and not empty.
flag() {
  local value=${!1:-}
  if [ -n "$value" ]; then args+=("$2" "$value"); fi
}
flag MAILHOOK_POLICYD --policyd
flag MAILHOOK_RELAY --smart-host
flag MAILHOOK_HOSTNAME --hostname
flag MAILHOOK_THREADS --io-threads
flag MAILHOOK_METRICS --metrics
flag MAILHOOK_POLICY_FAILURE --policy-failure
flag MAILHOOK_POLICY_TIMEOUT --policy-timeout
flag MAILHOOK_MAX_MESSAGE_SIZE --max-message-size
flag MAILHOOK_MAX_RECIPIENTS --max-recipients
flag MAILHOOK_MAX_CONNECTIONS --max-connections
flag MAILHOOK_MAX_CONNECTIONS_PER_IP --max-connections-per-ip
flag MAILHOOK_SHUTDOWN_GRACE --drain-timeout
flag MAILHOOK_TLS_CERT --tls-cert
flag MAILHOOK_TLS_KEY --tls-key
flag MAILHOOK_XCLIENT_HOSTS --xclient-hosts
flag MAILHOOK_POLICYD_TLS_CA --policyd-tls-ca
flag MAILHOOK_POLICYD_TLS_CERT --policyd-tls-cert
flag MAILHOOK_POLICYD_TLS_KEY --policyd-tls-key

echo "start-front.sh: exec $bin_dir/mailhook-front ${args[*]} $*" >&2
exec "$bin_dir/mailhook-front" "${args[@]}" "$@"
