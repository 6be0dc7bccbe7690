#!/bin/sh
# Writes the Postfix configuration of compose.yaml's "postfix" service (the
# "milter" profile): Debian's stock main.cf, then deploy/postfix/main.cf.snippet
# verbatim, then the few settings a container needs. Run at image build
# time by Dockerfile.postfix; tests/deploy runs it on a copy.
#
#   configure-postfix.sh CONFIG_DIR SNIPPET [MILTER]
#
# CONFIG_DIR must hold master.cf (Debian's); MILTER overrides the
# snippet's loopback smtpd_milters (default inet:policyd:8890, policyd's
# compose service name).
set -eu
conf=$1
snippet=$2
milter=${3:-inet:policyd:8890}
[ -f "$conf/master.cf" ] || { echo "configure-postfix.sh: no $conf/master.cf" >&2; exit 1; }

{
  cat /usr/share/postfix/main.cf.debian
  echo
  echo "# ---- deploy/postfix/main.cf.snippet ----"
  cat "$snippet"
} > "$conf/main.cf"

# `postconf -e` replaces a setting in place, so the snippet's comments stay
# next to the values it keeps.
# The snippet's per-milter group keeps its settings; only the address changes.
postconf -c "$conf" -e \
  "smtpd_milters = $(postconf -c "$conf" -h smtpd_milters | sed "s|inet:127.0.0.1:8890|$milter|")" \
  "myhostname = mx.example.com" \
  "mydestination = \$myhostname, localhost, example.com" \
  "local_recipient_maps =" \
  "luser_relay = maildemo" \
  "alias_maps = hash:/etc/aliases" \
  "alias_database = hash:/etc/aliases" \
  "inet_protocols = ipv4" \
  "mynetworks = 127.0.0.0/8" \
  "maillog_file = /dev/stdout" \
  "compatibility_level = 3.6"
# Demo delivery above: every local part of example.com lands in the
# mailbox of the user maildemo (/var/mail/maildemo). For real use, set
# relayhost or transport_maps to your mail store instead.

# No chroot: the jail would need copies of /etc/resolv.conf etc. to find
# the policyd container by name.
postconf -c "$conf" -F '*/*/chroot = n'
