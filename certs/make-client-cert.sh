#!/usr/bin/env bash
# Create the client certificate of one grading server, signed by the queue's
# CA, and print the serial and issuer DN the queue must register for it, in
# exactly the form nginx hands them to the app.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
    cat <<EOF
Usage: ${0##*/} [DIR] NAME

Create a client certificate for the grading server NAME, signed by the CA in
DIR (default: $DEFAULT_DIR):
  DIR/clients/NAME.key   private key, mode 0600
  DIR/clients/NAME.crt   certificate (extendedKeyUsage clientAuth)
  DIR/clients/NAME.pem   certificate and key in one file, mode 0600
Hand NAME.pem (or NAME.crt and NAME.key) and DIR/ca.crt to the grading
server, over a channel you trust. DIR/clients/issued.tsv keeps a record.

NAME: letters, digits, '.', '_' and '-' (at most 64); it becomes the CN.

The last line on standard output is exactly the arguments to give to
'graderqueue server add' for this grading server:
  --ssl-serial <hex serial> --ssl-dn '<issuer DN>'
The serial is printed as nginx's \$ssl_client_serial prints it (uppercase
hex) and the DN as nginx's \$ssl_client_i_dn prints it (RFC 2253). Messages
go to standard error.

Environment:
  KEY_TYPE     ec (P-256, default) or rsa (2048 bits)
  CLIENT_DAYS  validity in days (default 1825)
EOF
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
esac

case $# in
    1)
        dir="$DEFAULT_DIR"
        name="$1"
        ;;
    2)
        dir="$1"
        name="$2"
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac
days="${CLIENT_DAYS:-1825}"
check_days CLIENT_DAYS "$days"
[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] ||
    die "NAME must be 1-64 letters, digits, '.', '_' or '-' (and not start with '.', '_' or '-'): '$name'"
need_openssl
require_ca "$dir"

out="$dir/clients"
mkdir -p "$out"
will_create "$out/$name.key" "$out/$name.crt" "$out/$name.pem"
start_work

cat >"$work/ext.cnf" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = $(key_usage)
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF

new_key "$out/$name.key"
quiet openssl req -new -utf8 -sha256 \
    -key "$out/$name.key" \
    -subj "/O=graderqueue/CN=$name" \
    -out "$work/client.csr"
quiet openssl x509 -req -sha256 \
    -in "$work/client.csr" \
    -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(random_serial)" \
    -days "$days" \
    -extfile "$work/ext.cnf" \
    -out "$out/$name.crt"
chmod 644 "$out/$name.crt"
quiet openssl verify -CAfile "$dir/ca.crt" -purpose sslclient "$out/$name.crt"

(
    umask 077
    cat "$out/$name.crt" "$out/$name.key" >"$out/$name.pem"
)
chmod 600 "$out/$name.pem"

serial="$(cert_serial "$out/$name.crt")"
dn="$(cert_issuer_dn "$out/$name.crt")"
if [[ ! -f "$out/issued.tsv" ]]; then
    printf 'created\tname\tserial\tissuer_dn\n' >"$out/issued.tsv"
fi
printf '%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$serial" "$dn" \
    >>"$out/issued.tsv"

info "Client certificate for '$name' created in $out (valid $days days):"
info "  $out/$name.crt, $out/$name.key, $out/$name.pem"
info "Give the grading server $out/$name.pem and $dir/ca.crt."
info "Register it with these arguments (the last line below), for example:"
info "  graderqueue server add $name --type <server type> --wakeup-url udp://<its address>:20000 \\"
info "      <arguments>"
printf -- '--ssl-serial %s --ssl-dn %s\n' "$serial" "$(shell_quote "$dn")"
