"""JOSE tokens of the protocol: a JWS (RS512) inside a JWE (RSA-OAEP-256, A256CBC-HS512).

Requests from platforms are opened here; results to platforms and requests
from :mod:`graderqueue.client` are sealed here, so both directions share one
implementation. Only the protocol's algorithms are accepted, and the size of
a token is bounded before any crypto work.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from jwcrypto import jwe, jwk, jws
from jwcrypto.common import JWException

from graderqueue.config import Settings
from graderqueue.errors import TokenError

JWE_ALG = "RSA-OAEP-256"
JWE_ENC = "A256CBC-HS512"
JWS_ALG = "RS512"

DEFAULT_MAX_BYTES = 1024 * 1024
#: The largest result (``sResultData`` as compact JSON) the queue delivers by
#: default: ``Settings.max_result_bytes``, which the platform client also uses.
DEFAULT_MAX_RESULT_BYTES: int = Settings.max_result_bytes
# Around the result in a token: {"sTaskName":<job name, 255 characters that
# may each be a 6-byte escape>,"sResultData":...,"date":"dd-mm-YYYY"}.
RESULT_PAYLOAD_SLACK = 2048
ENVELOPE_SLACK = 8192


def set_size_limit(max_bytes: int) -> None:
    """Match jwcrypto's inflate limits to the queue's documented token limit.

    jwcrypto refuses to inflate more than 256 KiB by default; the protocol
    promises platforms ``token_max_bytes`` for the token and for what it
    decompresses to. These are process-wide settings of jwcrypto.
    """
    jwe.default_max_compressed_size = max_bytes
    jwe.default_max_plaintext_size = max_bytes


set_size_limit(DEFAULT_MAX_BYTES)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def compact_header(token: str, nparts: int) -> dict[str, Any]:
    """The protected header of a compact JWE (5 parts) or JWS (3 parts), unverified."""
    parts = token.split(".")
    if len(parts) != nparts:
        raise TokenError("Invalid token: malformed.")
    try:
        header = json.loads(_b64decode(parts[0]))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TokenError("Invalid token: malformed header.") from exc
    if not isinstance(header, dict):
        raise TokenError("Invalid token: malformed header.")
    return header


def check_size(token: str, max_bytes: int) -> None:
    if len(token) > max_bytes:
        raise TokenError(f"Invalid token: larger than the limit of {max_bytes} bytes.")


def seal(
    payload: dict[str, Any],
    signing_key: jwk.JWK,
    signer_kid: str,
    recipient_key: jwk.JWK,
    recipient_kid: str,
    *,
    zip_max_bytes: int | None = None,
) -> str:
    """Sign ``payload`` (RS512) then encrypt the JWS (RSA-OAEP-256).

    The JWS is compressed (``zip`` DEF) unless it is longer than
    ``zip_max_bytes`` (None: always compressed). Compact JSON: a result's
    size in the token is the size :func:`result_json_bytes` measures.
    """
    signer = jws.JWS(json.dumps(payload, separators=(",", ":")).encode())
    signer.add_signature(signing_key, None, json.dumps({"alg": JWS_ALG, "kid": signer_kid}), None)
    inner = signer.serialize(compact=True)
    header = {"alg": JWE_ALG, "enc": JWE_ENC, "kid": recipient_kid}
    if zip_max_bytes is None or len(inner) <= zip_max_bytes:
        header["zip"] = "DEF"
    outer = jwe.JWE(inner.encode(), json.dumps(header))
    outer.add_recipient(recipient_key)
    return outer.serialize(compact=True)


def result_json_bytes(jobdata: Any) -> int:
    """The size of a result (``sResultData``) as a result token carries it: compact JSON."""
    return len(json.dumps(jobdata, separators=(",", ":")))


def result_token_max_bytes(max_result_bytes: int) -> int:
    """The longest result token a result of up to ``max_result_bytes`` makes.

    Uncompressed is the worst case: the payload JSON (the result and up to
    ``RESULT_PAYLOAD_SLACK`` of job name and date) is base64url-encoded in
    the JWS (4/3) and the JWS again in the JWE (4/3), plus headers, the
    signature and the wrapped key (``ENVELOPE_SLACK``, RSA keys up to 8192
    bits). A platform opens result tokens up to this size, both as sent and
    inflated.
    """
    return (max_result_bytes + RESULT_PAYLOAD_SLACK) * 16 // 9 + ENVELOPE_SLACK


def decrypt(token: str, private_key: jwk.JWK, max_bytes: int) -> str:
    """Decrypt a compact JWE made with the protocol's algorithms; returns the plaintext."""
    check_size(token, max_bytes)
    header = compact_header(token, 5)
    if header.get("alg") != JWE_ALG or header.get("enc") != JWE_ENC:
        raise TokenError(f"Invalid token: encryption must be {JWE_ALG} with {JWE_ENC}.")
    if header.get("zip") not in (None, "DEF"):
        raise TokenError("Invalid token: unsupported compression.")
    try:
        outer = jwe.JWE(algs=[JWE_ALG, JWE_ENC])
        outer.deserialize(token)
        # The inflate limit of this call, not jwcrypto's process-wide one:
        # the platform client opens results larger than the requests the
        # queue takes (token_max_bytes) in the same process in tests.
        outer.decrypt(private_key, max_plaintext=max_bytes)
        plaintext = outer.payload
    except (JWException, ValueError, TypeError) as exc:
        # jwcrypto folds every failure into one exception; its text tells a
        # payload that inflates past the limit from a wrong key.
        if "exceeds maximum" in str(exc):
            raise TokenError(
                f"Invalid token: it decompresses to more than the limit of {max_bytes} bytes."
            ) from exc
        raise TokenError("Invalid token: cannot decrypt it with the queue's key.") from exc
    if len(plaintext) > max_bytes:
        raise TokenError(f"Invalid token: larger than the limit of {max_bytes} bytes.")
    try:
        return plaintext.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TokenError("Invalid token: the encrypted content is not a JWS.") from exc


def signer_kid(inner: str) -> str | None:
    """The ``kid`` of a compact JWS, read without verifying (to pick keys)."""
    header = compact_header(inner, 3)
    if header.get("alg") != JWS_ALG:
        raise TokenError(f"Invalid token: signature algorithm must be {JWS_ALG}.")
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def verify(inner: str, public_keys: Iterable[jwk.JWK]) -> dict[str, Any]:
    """Verify a compact JWS against any of ``public_keys``; returns its JSON payload."""
    signer_kid(inner)  # checks the algorithm before any crypto
    for key in public_keys:
        try:
            checker = jws.JWS()
            checker.allowed_algs = [JWS_ALG]
            checker.deserialize(inner)
            checker.verify(key, alg=JWS_ALG)
        except (JWException, ValueError, TypeError):
            continue
        return _json_object(checker.payload)
    raise TokenError("Invalid token: signature cannot be verified with the platform's key.")


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TokenError("Invalid token: payload is not JSON.") from exc
    if not isinstance(data, dict):
        raise TokenError("Invalid token: payload is not a JSON object.")
    return data


def unseal(
    token: str,
    private_key: jwk.JWK,
    public_keys: Iterable[jwk.JWK],
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """Decrypt then verify; the inverse of :func:`seal`."""
    return verify(decrypt(token, private_key, max_bytes), public_keys)
