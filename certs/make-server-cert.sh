#!/usr/bin/env bash
# Create the queue's HTTPS server certificate, signed by the queue's CA, so
# grading servers can verify the queue with ca.crt alone.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
    cat <<EOF
Usage: ${0##*/} [DIR] HOSTNAME [IP-OR-NAME...]

Create the HTTPS server certificate for HOSTNAME, signed by the CA in DIR
(default: $DEFAULT_DIR; the first argument is DIR when it is an existing
directory):
  DIR/server.key   private key, mode 0600 (nginx: ssl_certificate_key)
  DIR/server.crt   certificate (nginx: ssl_certificate)

Every name goes into subjectAltName: IPv4/IPv6 addresses as IP entries,
anything else as DNS entries. Example:
  ${0##*/} $DEFAULT_DIR queue.example.org 192.0.2.10 2001:db8::10

Environment:
  KEY_TYPE     ec (P-256, default) or rsa (2048 bits)
  SERVER_DAYS  validity in days (default 825)

Refuses to overwrite an existing server certificate.
EOF
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
esac

dir="$DEFAULT_DIR"
if [[ $# -ge 2 && -d "$1" ]]; then
    dir="$1"
    shift
fi
[[ $# -ge 1 ]] || {
    usage >&2
    exit 2
}
days="${SERVER_DAYS:-825}"
check_days SERVER_DAYS "$days"
need_openssl
require_ca "$dir"

hostname="$1"
san=""
for name in "$@"; do
    if [[ "$name" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || "$name" =~ ^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$ ]]; then
        entry="IP:$name"
    elif [[ "$name" =~ ^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$ ]]; then
        entry="DNS:$name"
    else
        die "'$name' is neither an IP address nor a DNS name"
    fi
    san="${san:+$san,}$entry"
done

will_create "$dir/server.key" "$dir/server.crt"
start_work

cat >"$work/ext.cnf" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = $(key_usage)
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF

new_key "$dir/server.key"
quiet openssl req -new -utf8 -sha256 \
    -key "$dir/server.key" \
    -subj "/O=graderqueue/CN=$(subj_escape "$hostname")" \
    -out "$work/server.csr"
quiet openssl x509 -req -sha256 \
    -in "$work/server.csr" \
    -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(random_serial)" \
    -days "$days" \
    -extfile "$work/ext.cnf" \
    -out "$dir/server.crt"
chmod 644 "$dir/server.crt"

info "Server certificate created in $dir (valid $days days):"
info "  $dir/server.key  (nginx: ssl_certificate_key, mode 0600)"
info "  $dir/server.crt  (nginx: ssl_certificate)"
printf 'subjectAltName: %s\n' "$san"
