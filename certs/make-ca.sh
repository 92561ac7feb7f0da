#!/usr/bin/env bash
# Create the queue's certificate authority: it signs the HTTPS server
# certificate and one client certificate per grading server, and nginx trusts
# exactly the client certificates it signed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
    cat <<EOF
Usage: ${0##*/} [DIR [CN]]

Create the graderqueue certificate authority in DIR (default: $DEFAULT_DIR):
  DIR/ca.key   private key, mode 0600: keep it offline if you can
  DIR/ca.crt   CA certificate: nginx's ssl_client_certificate, and what
               grading servers use to verify the queue's HTTPS certificate

CN is the CA's common name (default: "graderqueue CA"). The CA subject is
O=graderqueue,CN=<CN>; its RFC 2253 form is the issuer DN every grading
server is registered with, so choose it once.

Environment:
  KEY_TYPE  ec (P-256, default) or rsa (4096 bits)
  CA_DAYS   validity in days (default 3650, ten years)

Refuses to overwrite an existing CA: a new CA invalidates every client
certificate already handed out.
EOF
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
esac
[[ $# -le 2 ]] || {
    usage >&2
    exit 2
}

dir="${1:-$DEFAULT_DIR}"
cn="${2:-graderqueue CA}"
days="${CA_DAYS:-3650}"
check_days CA_DAYS "$days"
[[ -n "$cn" ]] || die "the CA common name must not be empty"
need_openssl

mkdir -p "$dir"
will_create "$dir/ca.key" "$dir/ca.crt"

new_key "$dir/ca.key" ca
quiet openssl req -new -x509 -utf8 -sha256 \
    -key "$dir/ca.key" \
    -subj "/O=graderqueue/CN=$(subj_escape "$cn")" \
    -days "$days" \
    -set_serial "0x$(random_serial)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$dir/ca.crt"
chmod 644 "$dir/ca.crt"

info "CA created in $dir (valid $days days):"
info "  $dir/ca.key  (private, mode 0600)"
info "  $dir/ca.crt  (nginx: ssl_client_certificate)"
printf 'Issuer DN of the certificates it signs: %s\n' "$(cert_subject_dn "$dir/ca.crt")"
