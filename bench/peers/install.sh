#!/bin/sh
# Installs the peers bench/compare measures mailhook against, on Debian 12
# as root: Postfix (smtp-source, smtp-sink, the private instances),
# libmilter-dev and cc (the two C milters), rspamd, qpsmtpd, gnuplot-nox
# (the chart), and Haraka from npm into a cache outside the repository
# ($MAILHOOK_PEERS_DIR, default /var/tmp/mailhook-peers; never node_modules
# in the tree). No service is started: bench/compare starts private copies
# on loopback and stops them. A peer that cannot be installed is reported
# here and then skipped by bench/compare with the reason; this script never
# fails because of one peer.
set -u
PEERS_DIR=${MAILHOOK_PEERS_DIR:-/var/tmp/mailhook-peers}
HARAKA_VERSION=${HARAKA_VERSION:-3}

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (apt-get); nothing installed" >&2
    exit 1
fi

# Debian's maintainer scripts would start rspamd/redis/postfix/qpsmtpd as
# system services; a policy-rc.d that answers 101 keeps them stopped. An
# existing policy-rc.d is left alone.
own_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
fi
trap '[ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT

missing=
for pkg in postfix libmilter-dev gcc gnuplot-nox rspamd qpsmtpd nodejs npm; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
# nodejs from another source may ship npm itself.
if command -v npm >/dev/null 2>&1; then missing=$(echo "$missing" | sed 's/ npm\b//; s/ nodejs\b//'); fi
if [ -n "$missing" ]; then
    echo "install.sh: apt-get install$missing"
    apt-get update -q >/dev/null 2>&1 || echo "install.sh: apt-get update failed" >&2
    # One by one, so a package that is unavailable skips only its peer.
    for pkg in $missing; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1 \
            && echo "install.sh: installed $pkg" \
            || echo "install.sh: could not install $pkg (its peer will be skipped)" >&2
    done
fi
# Installing must not leave a system service behind (if a service manager
# started one despite policy-rc.d).
for svc in postfix rspamd qpsmtpd redis-server; do
    command -v service >/dev/null 2>&1 && service "$svc" status >/dev/null 2>&1 && service "$svc" stop >/dev/null 2>&1
done

if command -v npm >/dev/null 2>&1; then
    if [ -x "$PEERS_DIR/haraka/node_modules/.bin/haraka" ]; then
        echo "install.sh: Haraka already in $PEERS_DIR/haraka"
    else
        mkdir -p "$PEERS_DIR/haraka"
        (cd "$PEERS_DIR/haraka" && [ -f package.json ] || echo '{"private": true}' > package.json)
        if (cd "$PEERS_DIR/haraka" && npm install --no-audit --no-fund --loglevel=error "Haraka@$HARAKA_VERSION" >npm.log 2>&1); then
            echo "install.sh: installed Haraka into $PEERS_DIR/haraka"
        else
            echo "install.sh: npm install Haraka failed (see $PEERS_DIR/haraka/npm.log); haraka will be skipped" >&2
        fi
    fi
else
    echo "install.sh: no npm; haraka will be skipped" >&2
fi
exit 0
