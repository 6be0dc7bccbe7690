#!/bin/bash
# Entrypoint of the policyd image: environment variables to flags, then
# exec mailhook-policyd (so it is PID 1 and gets SIGTERM/SIGHUP itself),
# logging to stderr. Arguments given to the script are appended as flags.
#
#   MAILHOOK_LISTEN          --listen          gRPC address (default 0.0.0.0:7070)
#   MAILHOOK_SCRIPTS         --script          Lua scripts, space- or comma-separated, chained
#                                              in order (default /etc/mailhook/policy.lua)
#   MAILHOOK_WORKERS         --workers         Lua worker threads (policyd's default: the
#                                              machine's cores, not the container's CPU limit)
#   MAILHOOK_METRICS         --metrics         Prometheus HOST:PORT (off when unset)
#   MAILHOOK_MILTER          --milter          also serve the milter protocol, e.g. inet:8890@0.0.0.0
#   MAILHOOK_SPOOL_DIR       --temp-dir        per-message temp files (default: a temp dir)
#   MAILHOOK_DIALECT         --dialect
#   MAILHOOK_HOOK_TIMEOUT    --hook-timeout    milliseconds
#   MAILHOOK_LUA_MEMORY      --lua-memory      MB per worker; keep workers x this under the memory limit
#   MAILHOOK_DRAIN_TIMEOUT   --drain-timeout   seconds
#   MAILHOOK_DNS_SERVER      --dns-server
#   MAILHOOK_DNS_TIMEOUT     --dns-timeout     milliseconds
#   MAILHOOK_PTR_LOOKUP      --ptr-lookup      yes or no
#   MAILHOOK_KV              --kv              Redis IP:PORT for the kv module (state shared by replicas);
#                                              a HOST:PORT is resolved once, here (below)
#   MAILHOOK_KV_TIMEOUT      --kv-timeout      milliseconds
#   MAILHOOK_MAX_PENDING_EVENTS  --max-pending-events  per gRPC stream, then reading pauses
#   MAILHOOK_TLS_CERT, MAILHOOK_TLS_KEY, MAILHOOK_TLS_CLIENT_CA
#                            --tls-cert, --tls-key, --tls-client-ca: mutual TLS on the
#                            gRPC port (all three; only fronts with a client
#                            certificate of that CA open sessions)
#   MAILHOOK_LUA_READ_DIRS   --lua-read-dir    directories scripts may read, space- or comma-separated
#   MAILHOOK_LUA_WRITE_DIRS  --lua-write-dir   directories scripts may also write, the same
#   MAILHOOK_LUA_PATH        --lua-path        where require finds modules (DIR/?.lua;...)
#   MAILHOOK_LUA_ENV         --lua-env         variables scripts may read with os.getenv, the same
#   MAILHOOK_LOAD_TIMEOUT    --load-timeout    milliseconds loading the scripts may take
#   MAILHOOK_BIN_DIR         where mailhook-policyd is (default: this script's directory)
set -euo pipefail
bin_dir=${MAILHOOK_BIN_DIR:-$(dirname "$0")}

# MAILHOOK_KV may name the Redis host (compose.yaml: redis:6379), but
# policyd takes an IP, so no name lookup ever blocks a worker: the name is
# resolved here, once, at start (IPv4). A Redis that comes back at another
# address needs a policyd restart.
kv=${MAILHOOK_KV:-}
kv_host=${kv%:*}
if [ -n "$kv" ] && [[ $kv_host == *[!0-9.]* && $kv_host != \[*\] ]]; then
  kv_ip=$(getent ahostsv4 "$kv_host" | awk 'NR == 1 { print $1 }') || kv_ip=""
  if [ -z "$kv_ip" ]; then
    echo "start-policyd.sh: MAILHOOK_KV: cannot resolve $kv_host" >&2
    exit 1
  fi
  echo "start-policyd.sh: MAILHOOK_KV $kv -> $kv_ip:${kv##*:}" >&2
  MAILHOOK_KV=$kv_ip:${kv##*:}
fi

args=(--log-stderr --listen "${MAILHOOK_LISTEN:-0.0.0.0:7070}")
IFS=', ' read -r -a scripts <<<"${MAILHOOK_SCRIPTS:-/etc/mailhook/policy.lua}"
for script in "${scripts[@]}"; do
  args+=(--script "$script")
done

# Each optional variable becomes its flag only when set and not empty.
flag() {
  local value=${!1:-}
  if [ -n "$value" ]; then args+=("$2" "$value"); fi
}
flag MAILHOOK_WORKERS --workers
flag MAILHOOK_METRICS --metrics
flag MAILHOOK_MILTER --milter
flag MAILHOOK_SPOOL_DIR --temp-dir
flag MAILHOOK_DIALECT --dialect
flag MAILHOOK_HOOK_TIMEOUT --hook-timeout
flag MAILHOOK_LUA_MEMORY --lua-memory
flag MAILHOOK_DRAIN_TIMEOUT --drain-timeout
flag MAILHOOK_DNS_SERVER --dns-server
flag MAILHOOK_DNS_TIMEOUT --dns-timeout
flag MAILHOOK_PTR_LOOKUP --ptr-lookup
flag MAILHOOK_KV --kv
flag MAILHOOK_KV_TIMEOUT --kv-timeout
flag MAILHOOK_MAX_PENDING_EVENTS --max-pending-events
flag MAILHOOK_TLS_CERT --tls-cert
flag MAILHOOK_TLS_KEY --tls-key
flag MAILHOOK_TLS_CLIENT_CA --tls-client-ca
flag MAILHOOK_LUA_PATH --lua-path
flag MAILHOOK_LOAD_TIMEOUT --load-timeout
# The sandbox's grants, lists: one flag per item.
flags() {
  local items item
  IFS=', ' read -r -a items <<<"${!1:-}"
  for item in "${items[@]}"; do
    if [ -n "$item" ]; then args+=("$2" "$item"); fi
  done
}
flags MAILHOOK_LUA_READ_DIRS --lua-read-dir
flags MAILHOOK_LUA_WRITE_DIRS --lua-write-dir
flags MAILHOOK_LUA_ENV --lua-env

echo "start-policyd.sh: exec $bin_dir/mailhook-policyd ${args[*]} $*" >&2
exec "$bin_dir/mailhook-policyd" "${args[@]}" "$@"
