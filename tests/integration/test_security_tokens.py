"""Platform tokens: size bound before crypto, the protocol's algorithms only,
keys parsed once, freshness and replays, and key rotation on both sides.

Tokens are made here with jwcrypto exactly as a platform would (or as an
attacker would, with other algorithms); each refused one must answer
errorcode 2 with a message that says why, and change nothing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jwcrypto import jwe, jwk, jws

from graderqueue.errors import TokenError
from graderqueue.protocol import keys, tokens
from graderqueue.protocol.keys import parse_public_key
from graderqueue.registry import actions as registry
from harness.queue import PlatformIdentity, QueueSetup

MIB = 1024 * 1024


# -- making tokens as a platform does -----------------------------------------


def queue_public(queue: QueueSetup, name: str | None = None) -> jwk.JWK:
    name = name or queue.settings.key_name
    return jwk.JWK.from_pem((queue.settings.resolved_key_dir / f"{name}.pub.pem").read_bytes())


def signed(payload: dict[str, Any], key: jwk.JWK, header: dict[str, Any]) -> str:
    signer = jws.JWS(json.dumps(payload).encode())
    signer.allowed_algs = [header["alg"]]
    signer.add_signature(key, None, json.dumps(header), None)
    return signer.serialize(compact=True)


def encrypted(inner: str, key: jwk.JWK, header: dict[str, Any]) -> str:
    outer = jwe.JWE(inner.encode(), json.dumps(header), algs=[header["alg"], header["enc"]])
    outer.add_recipient(key)
    return outer.serialize(compact=True)


def make_token(
    queue: QueueSetup,
    platform: PlatformIdentity,
    payload: dict[str, Any],
    *,
    private_pem: str | None = None,
    kid: str | None = None,
    recipient: jwk.JWK | None = None,
) -> str:
    key = jwk.JWK.from_pem((private_pem or platform.private_pem).encode())
    return tokens.seal(
        payload,
        key,
        platform.name,
        recipient or queue_public(queue, kid),
        kid or queue.settings.key_name,
    )


def api(queue: QueueSetup, platform_name: str, token: str) -> dict[str, Any]:
    return queue.post("/api.php", sToken=token, sPlatform=platform_name)


def refused(queue: QueueSetup, platform_name: str, token: str, message: str) -> None:
    """The token is refused with errorcode 2 and ``message``, and nothing is stored."""
    before = queue.snapshot()
    answer = api(queue, platform_name, token)
    assert answer["errorcode"] == 2, answer
    assert message in answer["errormsg"], answer
    assert queue.snapshot() == before


def job(n: int = 1) -> dict[str, Any]:
    return {"request": "sendjob", "jobdata": json.dumps({"taskPath": f"/t/{n}"}), "tags": "c"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def platform(sqlite_queue: QueueSetup) -> PlatformIdentity:
    return sqlite_queue.platform("plat")


# -- size --------------------------------------------------------------------


def test_an_oversized_token_is_refused_before_any_crypto(sqlite_queue, platform):
    """A real token, padded past 1 MiB: the answer is about size, not decryption.

    Decrypting first would have failed with "cannot decrypt"; checking the
    platform first with "Unknown platform". The size message shows the bound
    comes before both.
    """
    good = make_token(sqlite_queue, platform, job())
    head, key, iv, ciphertext, tag = good.split(".")
    padded = ".".join([head, key, iv, ciphertext + "A" * MIB, tag])
    assert len(padded) > MIB
    limit = f"larger than the limit of {MIB} bytes"

    private = keys.QueueKeys(sqlite_queue.settings.resolved_key_dir, "graderqueue").active.private
    with pytest.raises(TokenError, match=limit):
        tokens.decrypt(padded, private, MIB)
    with pytest.raises(TokenError, match=limit):
        tokens.decrypt("x" * (MIB + 1), private, MIB)

    refused(sqlite_queue, "plat", padded, limit)
    refused(sqlite_queue, "no-such-platform", padded, limit)
    assert api(sqlite_queue, "plat", good)["errorcode"] == 0


@pytest.mark.queue_settings(token_max_bytes=16384)
def test_the_size_limit_is_configurable_and_binds_jwcrypto_too(sqlite_queue, platform):
    try:
        small = make_token(sqlite_queue, platform, job())
        assert api(sqlite_queue, "plat", small)["errorcode"] == 0
        # The app set jwcrypto's (process-wide) inflate limits to its own.
        assert jwe.default_max_compressed_size == 16384
        assert jwe.default_max_plaintext_size == 16384

        # Random padding does not compress: the token itself is over the limit.
        noise = b64(os.urandom(12 * 1024))
        big = make_token(sqlite_queue, platform, {**job(2), "pad": noise})
        assert len(big) > 16384
        refused(sqlite_queue, "plat", big, "larger than the limit of 16384 bytes")
        # Under the limit as sent, over it once inflated.
        bomb = make_token(sqlite_queue, platform, {**job(3), "pad": "a" * 20000})
        assert len(bomb) < 16384
        refused(sqlite_queue, "plat", bomb, "Invalid token")
    finally:
        tokens.set_size_limit(tokens.DEFAULT_MAX_BYTES)


def test_a_token_that_inflates_past_the_limit_is_refused(sqlite_queue, platform):
    """A few KiB of DEFLATE that would inflate to 3 MiB (a zip bomb)."""
    bomb = make_token(sqlite_queue, platform, {**job(), "pad": "a" * (3 * MIB)})
    assert len(bomb) < 64 * 1024
    refused(sqlite_queue, "plat", bomb, "Invalid token")


# -- algorithms ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "enc"),
    [
        ("RSA-OAEP", "A256CBC-HS512"),
        ("RSA1_5", "A256CBC-HS512"),
        ("RSA-OAEP-256", "A128CBC-HS256"),
        ("RSA-OAEP-256", "A256GCM"),
    ],
)
def test_other_encryption_algorithms_are_refused(sqlite_queue, platform, alg, enc):
    key = jwk.JWK.from_pem(platform.private_pem.encode())
    inner = signed(job(), key, {"alg": "RS512", "kid": "plat"})
    token = encrypted(inner, queue_public(sqlite_queue), {"alg": alg, "enc": enc})
    refused(sqlite_queue, "plat", token, "encryption must be RSA-OAEP-256 with A256CBC-HS512")


def test_a_direct_key_token_is_refused(sqlite_queue, platform):
    """``dir`` with a key the attacker picked: no RSA at all."""
    key = jwk.JWK.from_pem(platform.private_pem.encode())
    inner = signed(job(), key, {"alg": "RS512", "kid": "plat"})
    secret = jwk.JWK.generate(kty="oct", size=512)
    token = encrypted(inner, secret, {"alg": "dir", "enc": "A256CBC-HS512"})
    refused(sqlite_queue, "plat", token, "encryption must be RSA-OAEP-256")


@pytest.mark.parametrize("alg", ["RS256", "RS384", "PS512"])
def test_other_signature_algorithms_are_refused(sqlite_queue, platform, alg):
    key = jwk.JWK.from_pem(platform.private_pem.encode())
    inner = signed(job(), key, {"alg": alg, "kid": "plat"})
    token = encrypted(inner, queue_public(sqlite_queue), dict(tokens_header()))
    refused(sqlite_queue, "plat", token, "signature algorithm must be RS512")


def tokens_header() -> dict[str, str]:
    return {"alg": tokens.JWE_ALG, "enc": tokens.JWE_ENC, "zip": "DEF", "kid": "graderqueue"}


def test_hmac_keyed_with_the_public_key_is_refused(sqlite_queue, platform):
    """The classic algorithm confusion: HS512 with the platform's public key as secret."""
    secret = jwk.JWK(kty="oct", k=b64(platform.public_pem.encode()))
    inner = signed(job(), secret, {"alg": "HS512", "kid": "plat"})
    token = encrypted(inner, queue_public(sqlite_queue), tokens_header())
    refused(sqlite_queue, "plat", token, "signature algorithm must be RS512")


def test_an_unsigned_token_is_refused(sqlite_queue, platform):
    header = b64(json.dumps({"alg": "none", "kid": "plat"}).encode())
    inner = f"{header}.{b64(json.dumps(job()).encode())}."
    token = encrypted(inner, queue_public(sqlite_queue), tokens_header())
    refused(sqlite_queue, "plat", token, "signature algorithm must be RS512")


def test_a_token_signed_by_another_key_is_refused(sqlite_queue, platform):
    other_private, _ = keys.generate_rsa_pem()
    token = make_token(sqlite_queue, platform, job(), private_pem=other_private.decode())
    refused(sqlite_queue, "plat", token, "signature cannot be verified")


def test_a_token_signed_for_another_platform_is_refused(sqlite_queue, platform):
    """A platform cannot pass its own token off as another's (kid vs sPlatform)."""
    sqlite_queue.platform("victim")
    token = make_token(sqlite_queue, platform, job())
    refused(sqlite_queue, "victim", token, "kid does not match sPlatform")


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "kid": ["graderqueue"]},
        {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "kid": {"a": 1}},
        {"alg": ["RSA-OAEP-256"], "enc": "A256CBC-HS512"},
    ],
    ids=["kid-list", "kid-object", "alg-list"],
)
def test_odd_header_values_are_refused_cleanly(sqlite_queue, platform, header):
    """Found by scripts/fuzz_http.py: a list as kid once made an internal error."""
    good = make_token(sqlite_queue, platform, job())
    token = ".".join([b64(json.dumps(header).encode()), *good.split(".")[1:]])
    refused(sqlite_queue, "plat", token, "Invalid token")


def test_a_deeply_nested_header_is_refused_cleanly(sqlite_queue, platform):
    """Found by scripts/fuzz_tokens.py: json.loads raised RecursionError before auth."""
    good = make_token(sqlite_queue, platform, job())
    token = ".".join([b64(b"[" * 5000), *good.split(".")[1:]])
    refused(sqlite_queue, "plat", token, "malformed header")


def test_a_tampered_token_is_refused(sqlite_queue, platform):
    good = make_token(sqlite_queue, platform, job())
    head, key, iv, ciphertext, tag = good.split(".")
    flipped = ciphertext[:10] + ("A" if ciphertext[10] != "A" else "B") + ciphertext[11:]
    refused(sqlite_queue, "plat", ".".join([head, key, iv, flipped, tag]), "cannot decrypt")


# -- keys parsed once ----------------------------------------------------------


def test_platform_keys_are_parsed_once(sqlite_queue, platform):
    client = sqlite_queue.client_for(platform)
    assert client.test().startswith("Connected as platform")
    misses, hits = parse_public_key.cache_info().misses, parse_public_key.cache_info().hits
    for _ in range(3):
        client.test()
    info = parse_public_key.cache_info()
    assert info.misses == misses
    assert info.hits >= hits + 3


def test_queue_keys_are_read_once_at_start(sqlite_queue, platform):
    """The app parsed its key pairs when it started: it no longer needs the files."""
    client = sqlite_queue.client_for(platform)
    assert client.test().startswith("Connected")
    key_dir = sqlite_queue.settings.resolved_key_dir
    moved = key_dir.with_name("keys-away")
    shutil.move(key_dir, moved)
    try:
        assert client.test().startswith("Connected")
        assert client.sendjob({"taskPath": "/t"}, tags="c") > 0
    finally:
        shutil.move(moved, key_dir)


# -- freshness -----------------------------------------------------------------


def fresh_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def date_of(days_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%d-%m-%Y")


def test_a_fresh_token_is_accepted_once_and_its_replay_refused(queue):
    platform = queue.platform("fresh", require_fresh=True)
    token = make_token(queue, platform, {**job(), **fresh_claims()})
    first = api(queue, "fresh", token)
    assert first["errorcode"] == 0, first
    refused(queue, "fresh", token, "replayed")
    # The client library's fresh mode works with it, request after request.
    client = queue.client_for(platform, fresh=True)
    assert client.test().startswith("Connected")
    assert client.sendjob({"taskPath": "/t/2"}, tags="c") != first["jobid"]


def test_a_replayed_getjob_and_test_are_refused_too(queue):
    platform = queue.platform("fresh", require_fresh=True)
    jobid = queue.client_for(platform, fresh=True).sendjob({"taskPath": "/t"}, tags="c")
    for payload in ({"request": "test"}, {"request": "getjob", "jobid": str(jobid)}):
        token = make_token(queue, platform, {**payload, **fresh_claims()})
        assert api(queue, "fresh", token)["errorcode"] == 0
        refused(queue, "fresh", token, "replayed")


def test_a_refused_fresh_getjob_does_not_use_up_its_jti(sqlite_queue):
    platform = sqlite_queue.platform("fresh", require_fresh=True)
    token = make_token(
        sqlite_queue, platform, {"request": "getjob", "jobid": "999", **fresh_claims()}
    )
    refused(sqlite_queue, "fresh", token, "Invalid jobid")


def test_a_jti_is_per_platform(queue):
    one = queue.platform("fresh1", require_fresh=True)
    two = queue.platform("fresh2", require_fresh=True)
    claims = fresh_claims()
    assert api(queue, "fresh1", make_token(queue, one, {**job(1), **claims}))["errorcode"] == 0
    assert api(queue, "fresh2", make_token(queue, two, {**job(2), **claims}))["errorcode"] == 0


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iat": int(time.time()) - 2 * 86400, "exp": None}, "issued too long ago"),
        ({"iat": int(time.time()) + 2 * 86400, "exp": None}, "issued too long ago"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"jti": None}, "needs a `jti`"),
        ({"jti": "x" * 300}, "needs a `jti`"),
        ({"iat": "yesterday"}, "must be a number"),
    ],
    ids=["old-iat", "future-iat", "expired", "not-yet", "no-jti", "long-jti", "iat-text"],
)
def test_stale_or_incomplete_fresh_tokens_are_refused(sqlite_queue, claims, message):
    platform = sqlite_queue.platform("fresh", require_fresh=True)
    token = make_token(sqlite_queue, platform, {**job(), **fresh_claims(**claims)})
    refused(sqlite_queue, "fresh", token, message)


@pytest.mark.parametrize("days_ago", [0, 1, -1])
def test_a_date_within_a_day_is_fresh(sqlite_queue, days_ago):
    platform = sqlite_queue.platform("fresh", require_fresh=True)
    token = make_token(sqlite_queue, platform, {**job(), "date": date_of(days_ago)})
    assert api(sqlite_queue, "fresh", token)["errorcode"] == 0


@pytest.mark.parametrize(
    ("date", "message"),
    [
        (date_of(3), "not within a day"),
        (date_of(-3), "not within a day"),
        ("2024-01-01", "must be dd-mm-YYYY"),
        (None, "must send exp/iat and jti, or date"),
    ],
)
def test_a_stale_or_missing_date_is_refused(sqlite_queue, date, message):
    platform = sqlite_queue.platform("fresh", require_fresh=True)
    payload = {**job(), "date": date} if date else job()
    refused(sqlite_queue, "fresh", make_token(sqlite_queue, platform, payload), message)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": 1e300}, "between 1970 and 2100"),
        ({"exp": 10**400}, "between 1970 and 2100"),
        ({"exp": float("inf")}, "must be a finite number"),
        ({"iat": float("nan"), "exp": None}, "must be a finite number"),
        ({"iat": float("-inf")}, "must be a finite number"),
        ({"nbf": float("nan")}, "must be a finite number"),
        ({"iat": -1e300}, "between 1970 and 2100"),
    ],
    ids=["exp-1e300", "exp-huge-int", "exp-inf", "iat-nan", "iat-minus-inf", "nbf-nan", "iat-tiny"],
)
def test_non_finite_or_huge_times_are_refused_without_a_traceback(
    sqlite_queue, claims, message, caplog
):
    """Issue 11 item 10: these gave errorcode 1 and a traceback (float/datetime overflow)."""
    platform = sqlite_queue.platform("fresh", require_fresh=True)
    token = make_token(sqlite_queue, platform, {**job(), **fresh_claims(**claims)})
    with caplog.at_level("WARNING"):
        refused(sqlite_queue, "fresh", token, message)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
    assert "Traceback" not in caplog.text


def test_a_huge_exp_is_refused_from_every_platform(sqlite_queue, platform):
    token = make_token(sqlite_queue, platform, {**job(), "exp": 1e300})
    refused(sqlite_queue, "plat", token, "between 1970 and 2100")


def test_exp_is_honoured_from_every_platform(sqlite_queue, platform):
    """Freshness is optional per platform, but an expired token never counts."""
    stale = make_token(sqlite_queue, platform, {**job(), "exp": int(time.time()) - 3600})
    refused(sqlite_queue, "plat", stale, "expired")
    # Without require_fresh, a token without any claim is fine (the original protocol).
    assert api(sqlite_queue, "plat", make_token(sqlite_queue, platform, job()))["errorcode"] == 0


# -- key rotation ----------------------------------------------------------------


def test_a_platform_with_two_active_keys_may_sign_with_either(queue):
    platform = queue.platform("rot")
    new_private, new_public = keys.generate_rsa_pem()
    with queue.db.transaction() as session:
        added = registry.add_platform_key(session, "rot", new_public.decode())
        new_fingerprint = added.fingerprint
    old_fingerprint = keys.fingerprint(platform.public_pem)

    old_token = make_token(queue, platform, job(1))
    new_token = make_token(queue, platform, job(2), private_pem=new_private.decode())
    assert api(queue, "rot", old_token)["errorcode"] == 0
    assert api(queue, "rot", new_token)["errorcode"] == 0

    with queue.db.transaction() as session:
        registry.remove_platform_key(session, "rot", old_fingerprint[:12])
    refused(queue, "rot", make_token(queue, platform, job(3)), "signature cannot be verified")
    fresh_new = make_token(queue, platform, job(4), private_pem=new_private.decode())
    assert api(queue, "rot", fresh_new)["errorcode"] == 0

    with queue.db.transaction() as session, pytest.raises(Exception, match="last active key"):
        registry.remove_platform_key(session, "rot", new_fingerprint[:12])


RS512_ROT = {"alg": "RS512", "kid": "rot"}


def test_the_queue_decrypts_with_its_old_and_new_key_pairs(tmp_path):
    """During a rotation the kid picks the key; a kid naming no key of ours is refused."""
    setup = QueueSetup(tmp_path / "instance")
    try:
        setup.tag("c")
        setup.server_type("t-c", ["c"])
        platform = setup.platform("rot")
        key_dir = setup.settings.resolved_key_dir
        assert keys.create_key(key_dir, "graderqueue-2")

        for n, kid in enumerate(["graderqueue", "graderqueue-2"]):
            token = make_token(setup, platform, job(n), kid=kid)
            assert api(setup, "rot", token)["errorcode"] == 0, kid
        # A kid that names no key of the queue: made for another queue, refused.
        unnamed = make_token(setup, platform, job(5), recipient=queue_public(setup), kid="other")
        answer = api(setup, "rot", unnamed)
        assert answer["errorcode"] == 2
        assert "encrypted to key `other`" in answer["errormsg"]
        # No kid at all (as the original's platforms may send): the active key.
        inner = signed(job(6), jwk.JWK.from_pem(platform.private_pem.encode()), RS512_ROT)
        no_kid = encrypted(
            inner, queue_public(setup), {"alg": tokens.JWE_ALG, "enc": tokens.JWE_ENC}
        )
        assert api(setup, "rot", no_kid)["errorcode"] == 0
    finally:
        setup.close()

    # Step 3 of the rotation: the new key becomes the active one; old tokens still open.
    switched = QueueSetup(tmp_path / "instance", key_name="graderqueue-2")
    try:
        assert switched.app.extensions["graderqueue"].keys.active.name == "graderqueue-2"
        for n, kid in enumerate(["graderqueue", "graderqueue-2"], start=10):
            token = make_token(switched, platform, job(n), kid=kid)
            assert api(switched, "rot", token)["errorcode"] == 0, kid
    finally:
        switched.close()
