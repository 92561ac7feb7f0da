# shellcheck shell=bash
# Helpers shared by make-ca.sh, make-server-cert.sh and make-client-cert.sh.
# Sourced, never run. Everything goes through the openssl command line tool.

# shellcheck disable=SC2034 # used by the scripts that source this file
DEFAULT_DIR="./certs/out"
# ec (P-256, fast, the default) or rsa (4096 bits for the CA, 2048 for leaves).
KEY_TYPE="${KEY_TYPE:-ec}"

die() {
    printf '%s: error: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

info() {
    printf '%s\n' "$*" >&2
}

# quiet CMD...: run CMD without its chatter; show its stderr only if it fails.
quiet() {
    local err
    if ! err="$("$@" 2>&1 >/dev/null)"; then
        printf '%s\n' "$err" >&2
        die "'$1 ${2:-}' failed"
    fi
}

need_openssl() {
    command -v openssl >/dev/null 2>&1 || die "the openssl command is not installed"
    [[ "$KEY_TYPE" == ec || "$KEY_TYPE" == rsa ]] ||
        die "KEY_TYPE must be 'ec' or 'rsa', not '$KEY_TYPE'"
}

# A failed run removes what it created, so running it again is not refused
# for half-made files. Scripts call will_create before writing outputs, and
# start_work for a private scratch directory ($work).
work=""
created=()
on_exit() {
    local status=$?
    [[ -z "$work" ]] || rm -rf "$work"
    if [[ $status -ne 0 && ${#created[@]} -gt 0 ]]; then
        rm -f "${created[@]}"
    fi
    exit "$status"
}
trap on_exit EXIT

will_create() {
    refuse_overwrite "$@"
    created+=("$@")
}

start_work() {
    work="$(mktemp -d)"
}

check_days() {
    # $1: variable name, $2: value
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive number of days, not '$2'"
}

# The CA lives in DIR/ca.crt and DIR/ca.key.
has_ca() {
    [[ -f "$1/ca.crt" && -f "$1/ca.key" ]]
}

require_ca() {
    has_ca "$1" || die "no CA in '$1' (expected ca.crt and ca.key there); run make-ca.sh first"
}

refuse_overwrite() {
    local f
    for f in "$@"; do
        [[ ! -e "$f" ]] || die "'$f' already exists; move it away first (nothing was changed)"
    done
}

# new_key PATH [ca]: a private key readable by its owner only (mode 0600).
new_key() {
    local path="$1" role="${2:-leaf}"
    (
        umask 077
        case "$KEY_TYPE" in
            ec)
                quiet openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
                    -out "$path"
                ;;
            rsa)
                local bits=2048
                [[ "$role" == ca ]] && bits=4096
                quiet openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$bits" \
                    -out "$path"
                ;;
            *)
                die "KEY_TYPE must be 'ec' or 'rsa', not '$KEY_TYPE'"
                ;;
        esac
    )
    chmod 600 "$path"
}

# key_usage: the keyUsage value fitting KEY_TYPE for a TLS end-entity cert.
# RSA keys may be used for RSA key exchange (TLS 1.2), EC keys only sign.
key_usage() {
    if [[ "$KEY_TYPE" == rsa ]]; then
        printf 'critical,digitalSignature,keyEncipherment'
    else
        printf 'critical,digitalSignature'
    fi
}

# random_serial: 16 random bytes as hex, first nibble 1-7, so the serial is
# positive, has no leading zero byte and always prints as 32 hex digits.
random_serial() {
    local hex
    hex="$(openssl rand -hex 16)"
    printf '%X%s' "$((0x${hex:0:1} % 7 + 1))" "${hex:1}" | tr 'a-f' 'A-F'
}

# subj_escape VALUE: escape a value for one component of openssl's -subj.
subj_escape() {
    local v="$1"
    v="${v//\\/\\\\}"
    v="${v//\//\\/}"
    v="${v//+/\\+}"
    printf '%s' "$v"
}

# cert_serial CERT: the serial as nginx's $ssl_client_serial prints it
# (uppercase hex, whole bytes; both use OpenSSL's i2a_ASN1_INTEGER).
cert_serial() {
    local out
    out="$(openssl x509 -in "$1" -noout -serial)"
    printf '%s' "${out#serial=}"
}

# cert_issuer_dn CERT: the issuer DN as nginx's $ssl_client_i_dn prints it
# (RFC 2253: most specific RDN first, special characters escaped).
cert_issuer_dn() {
    local out
    out="$(openssl x509 -in "$1" -noout -issuer -nameopt RFC2253)"
    printf '%s' "${out#issuer=}"
}

# cert_subject_dn CERT: the subject DN in the same RFC 2253 form.
cert_subject_dn() {
    local out
    out="$(openssl x509 -in "$1" -noout -subject -nameopt RFC2253)"
    printf '%s' "${out#subject=}"
}

# shell_quote VALUE: VALUE in single quotes, safe to paste into a shell.
shell_quote() {
    local q="'\\''"
    printf "'%s'" "${1//\'/$q}"
}
