#!/bin/sh
# Installs the Debian 12 packages mailhook needs that are missing; quiet
# and quick when everything is there. Needs root (or sudo) only when
# something is missing. Never upgrades or removes anything.
#   install.sh [build]   packages.txt: build and run (./dev run, ./dev build, Dockerfiles)
#   install.sh test      packages.txt and packages-test.txt (./dev test)
#   install.sh missing build|test   only print what is missing, one a line
set -eu
here=$(dirname "$0")
list_only=no
if [ "${1:-}" = missing ]; then
  list_only=yes
  shift
fi
case "${1:-build}" in
  build) lists="$here/packages.txt" ;;
  test) lists="$here/packages.txt $here/packages-test.txt" ;;
  *) echo "usage: install.sh [missing] [build|test]" >&2; exit 2 ;;
esac
missing=""
# A line is "PKG" or "PKG COMMAND" (COMMAND on PATH also counts as present).
for p in $(cat $lists | grep -vE '^\s*(#|$)' | sed 's/^\s*\(\S*\)\s*\(\S*\).*/\1:\2/'); do
  pkg=${p%%:*}
  cmd=${p#*:}
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
  [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1 && continue
  missing="$missing $pkg"
done
if [ "$list_only" = yes ]; then
  for p in $missing; do echo "$p"; done
  exit 0
fi
[ -z "$missing" ] && exit 0
echo "install.sh: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# postfix asks debconf questions; answer them so the install never prompts.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
