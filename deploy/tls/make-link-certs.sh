#!/bin/sh
# Makes the certificates of the front <-> policyd gRPC link (mutual TLS):
# a private CA, policyd's certificate and the front's client certificate,
# laid out as Kubernetes TLS secrets and the compose file expect them:
#   DIR/ca.crt DIR/ca.key                      the CA (keep ca.key offline)
#   DIR/policyd/tls.crt tls.key ca.crt         policyd --tls-cert/--tls-key/--tls-client-ca
#   DIR/front/tls.crt tls.key ca.crt           front --policyd-tls-cert/-key/-ca
# policyd's certificate is good for server and client auth, so its own
# health probe can show it. Usage: make-link-certs.sh DIR [NAME...]
# NAMEs: the DNS names and IPs fronts use to reach policyd (default: policyd,
# localhost, mailhook-policyd.mailhook.svc.cluster.local, 127.0.0.1, ::1).
# Needs openssl. Existing files in DIR are replaced. Private keys are 0600;
# MAILHOOK_CERT_UID=10025 hands them to the images' user (bind mounts).
set -eu
[ $# -ge 1 ] || { echo "usage: $0 DIR [NAME...]" >&2; exit 2; }
dir=$1
shift
[ $# -gt 0 ] || set -- policyd localhost mailhook-policyd.mailhook.svc.cluster.local 127.0.0.1 ::1
days=${MAILHOOK_CERT_DAYS:-365}
san=""
for name in "$@"; do
  case "$name" in
    *[!0-9.:a-fA-F]*) entry="DNS:$name" ;;
    *) entry="IP:$name" ;;
  esac
  san="${san:+$san,}$entry"
done
mkdir -p "$dir/policyd" "$dir/front"
umask 077
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key "$dir/ca.key"
openssl req -x509 -new -key "$dir/ca.key" -days "$days" -subj "/CN=mailhook link CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$dir/ca.crt"

# sign ROLE CN EXTENSIONS
sign() {
  key "$dir/$1/tls.key"
  openssl req -new -key "$dir/$1/tls.key" -subj "/CN=$2" -out "$dir/$1/tls.csr"
  printf '%s\n' "$3" >"$dir/$1/ext.cnf"
  openssl x509 -req -in "$dir/$1/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days "$days" -extfile "$dir/$1/ext.cnf" -out "$dir/$1/tls.crt" 2>/dev/null
  rm -f "$dir/$1/tls.csr" "$dir/$1/ext.cnf"
  cp "$dir/ca.crt" "$dir/$1/ca.crt"
}
sign policyd mailhook-policyd "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"
sign front mailhook-front "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
chmod 0644 "$dir/ca.crt" "$dir"/*/ca.crt "$dir"/*/tls.crt
chmod 0755 "$dir/policyd" "$dir/front"
# Keys stay 0600; the images run as uid 10025, so for bind mounts give
# them to it: MAILHOOK_CERT_UID=10025 (needs root).
if [ -n "${MAILHOOK_CERT_UID:-}" ]; then
  chown "$MAILHOOK_CERT_UID" "$dir/policyd/tls.key" "$dir/front/tls.key"
fi
rm -f "$dir/ca.srl"
echo "certificates in $dir (policyd names: $san)"
