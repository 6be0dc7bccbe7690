#!/bin/sh
# Installs the Debian 12 packages of packages.txt that are missing; quiet
# and quick when everything is there. Needs root (or sudo) only when
# something is missing. Never upgrades or removes anything.
set -eu
here=$(dirname "$0")
missing=""
for p in $(grep -vE '^\s*(#|$)' "$here/packages.txt"); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install.sh: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# postfix asks debconf questions; answer them so the install never prompts.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
