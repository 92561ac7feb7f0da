#!/usr/bin/env bash
# A platform request to graderqueue with nothing but bash, openssl and curl:
#
#   platform-request.sh QUEUE_URL PLATFORM PLATFORM_KEY.pem QUEUE_PUB.pem QUEUE_KEY_NAME REQUEST_JSON
#
# REQUEST_JSON is the request object, for example
#   '{"request": "sendjob", "jobdata": {"taskPath": "$ROOT_PATH/sum"}, "tags": "c"}'
#   '{"request": "getjob", "jobid": "42"}'
# It is signed (JWS, RS512, kid = PLATFORM) with the platform's private key,
# encrypted (JWE, RSA-OAEP-256 + A256CBC-HS512, kid = QUEUE_KEY_NAME) to the
# queue's public key, and posted to QUEUE_URL/api.php. Prints the queue's
# JSON answer. The token is not compressed: the queue accepts both.
set -euo pipefail

if (($# != 6)); then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
url=$1 platform=$2 platform_key=$3 queue_pub=$4 queue_kid=$5 request=$6
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
hex_to_bytes() { printf '%s' "$1" | sed 's/../\\x&/g' | xargs -0 printf '%b'; }

# 1. The JWS: base64url(header) . base64url(payload) . base64url(signature).
jws_header=$(printf '{"alg":"RS512","kid":"%s"}' "$platform" | b64url)
payload=$(printf '%s' "$request" | b64url)
signature=$(printf '%s.%s' "$jws_header" "$payload" |
    openssl dgst -sha512 -sign "$platform_key" -binary | b64url)
jws="$jws_header.$payload.$signature"

# 2. The JWE around it. A256CBC-HS512 takes a 64-byte key: the first half
#    keys HMAC-SHA-512, the second half AES-256-CBC (RFC 7518, 5.2).
header=$(printf '{"alg":"RSA-OAEP-256","enc":"A256CBC-HS512","kid":"%s"}' "$queue_kid" | b64url)
cek=$(openssl rand -hex 64)
mac_key=${cek:0:64} enc_key=${cek:64:64}
iv=$(openssl rand -hex 16)
hex_to_bytes "$cek" >"$work/cek"
encrypted_key=$(openssl pkeyutl -encrypt -pubin -inkey "$queue_pub" -in "$work/cek" \
    -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 | b64url)
printf '%s' "$jws" | openssl enc -aes-256-cbc -K "$enc_key" -iv "$iv" >"$work/ciphertext"
# The tag: HMAC over AAD || IV || ciphertext || AAD length in bits (64-bit
# big-endian), cut to its first 32 bytes. The AAD is the encoded header.
{
    printf '%s' "$header"
    hex_to_bytes "$iv"
    cat "$work/ciphertext"
    hex_to_bytes "$(printf '%016x' $((${#header} * 8)))"
} >"$work/mac-input"
tag=$(openssl dgst -sha512 -mac HMAC -macopt "hexkey:$mac_key" -binary "$work/mac-input" |
    head -c 32 | b64url)
token="$header.$encrypted_key.$(hex_to_bytes "$iv" | b64url).$(b64url <"$work/ciphertext").$tag"

# 3. Post it as a form, as every platform does.
curl --silent --show-error --fail \
    --data-urlencode "sToken=$token" --data-urlencode "sPlatform=$platform" "$url/api.php"
echo
