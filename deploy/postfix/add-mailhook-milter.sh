#!/bin/sh
# Adds policyd's milter to a Postfix main.cf BESIDE the milters already
# there (rspamd, opendkim): appends main.cf.snippet's "{ inet:..., ... }"
# group to smtpd_milters (and to non_smtpd_milters when that lists its own
# milters), and adds the snippet's milter macros to the ones set. Other
# milters' entries and settings are never changed; running it twice
# changes nothing. Uses only `postconf -e`. Then: postfix check && postfix reload.
#
#   add-mailhook-milter.sh [CONFIG_DIR [ADDRESS]]
#     CONFIG_DIR  Postfix's (default $MAIL_CONFIG, else /etc/postfix)
#     ADDRESS     policyd's milter address as Postfix writes it
#                 (default the snippet's inet:127.0.0.1:8890)
set -eu
conf=${1:-${MAIL_CONFIG:-/etc/postfix}}
snippet=$(dirname "$0")/main.cf.snippet
[ -f "$conf/main.cf" ] || { echo "add-mailhook-milter.sh: no $conf/main.cf" >&2; exit 1; }
entry=$(sed -n 's/^smtpd_milters = //p' "$snippet")
default_address=$(echo "$entry" | sed 's/^{ *\([^, ]*\).*/\1/')
address=${2:-$default_address}
entry=$(echo "$entry" | sed "s|$default_address|$address|")

pc() { postconf -c "$conf" "$@"; }
# "value" plus " entry", unless the address is in it already.
with_entry() {
  case " $1 " in
    *"$address"[,\ }]*) printf '%s' "$1" ;;
    *) printf '%s' "${1:+$1 }$entry" ;;
  esac
}
# One read of everything, then one write: each postconf run right after a
# write of main.cf waits for the file to settle.
macros="milter_connect_macros milter_helo_macros milter_mail_macros milter_rcpt_macros"
current=$(pc -h smtpd_milters non_smtpd_milters $macros)
line() { printf '%s\n' "$current" | sed -n "${1}p"; }
set -- "smtpd_milters = $(with_entry "$(line 1)")"
non_smtpd=$(line 2)
case "$non_smtpd" in
  # Local submissions already go through the smtpd list, or the admin
  # chose to filter none of them: leave it.
  '$smtpd_milters' | '${smtpd_milters}' | '') ;;
  *) set -- "$@" "non_smtpd_milters = $(with_entry "$non_smtpd")" ;;
esac
[ -n "$non_smtpd" ] || echo "add-mailhook-milter.sh: non_smtpd_milters is empty: local submissions (sendmail(1)) are not filtered" >&2

# The macros: the set in force plus the snippet's, each name once.
n=3
for name in $macros; do
  value=$(line $n)
  n=$((n + 1))
  for m in $(sed -n "s/^$name = //p" "$snippet"); do
    case " $value " in
      *" $m "*) ;;
      *) value="$value $m" ;;
    esac
  done
  set -- "$@" "$name = $value"
done
pc -e "$@"
