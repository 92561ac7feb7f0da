"""The JSON API's ways in (operators' API tokens, platforms' signed bearer tokens),
its problem+json refusals, and GET /api/v1/queue, on both databases."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from jwcrypto import jwk, jws

from graderqueue.identity.api_callers import TOKEN_PREFIX
from harness.processes import run_cli

PROBLEM = "application/problem+json"


def bearer_jws(platform, aud: str, **overrides) -> str:  # type: ignore[no-untyped-def]
    """A platform's bearer token as PROTOCOL/API docs describe it, signed RS512."""
    now = int(time.time())
    claims = {"iss": platform.name, "aud": aud, "iat": now, "exp": now + 120}
    claims["jti"] = uuid.uuid4().hex
    claims.update(overrides.pop("claims", {}))
    header = {"alg": "RS512", "kid": platform.name, **overrides.pop("header", {})}
    key = overrides.pop("key", None) or jwk.JWK.from_pem(platform.private_pem.encode())
    token = jws.JWS(json.dumps(claims).encode())
    token.add_signature(key, None, protected=json.dumps(header))
    return token.serialize(compact=True)


def get(queue, path: str, token: str | None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return queue.app.test_client().get(path, headers=headers)


def api_token(queue, name: str = "ops", scope: str = "read") -> str:  # type: ignore[no-untyped-def]
    out = run_cli(["api-token", "add", name, "--scope", scope], env=queue.env).stdout
    (token,) = [w for w in out.split() if w.startswith(TOKEN_PREFIX)]
    return token


def send(queue, platform, tags: str, n: int = 1) -> None:  # type: ignore[no-untyped-def]
    client = queue.client_for(platform)
    for i in range(n):
        client.sendjob({"taskPath": "/t"}, tags=tags, jobusertaskid=f"{tags}-{uuid.uuid4()}-{i}")


def test_an_operator_token_sees_every_platforms_waiting_jobs(queue):
    other = queue.platform("platform2")
    first = queue.platform("first")
    send(queue, first, "c", 2)
    send(queue, other, "java", 3)
    token = api_token(queue)

    answer = get(queue, "/api/v1/queue", token)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["waiting"] == 5
    assert body["oldest_waiting_sec"] >= 0
    by_type = {row["type"]: row["waiting"] for row in body["by_type"]}
    assert by_type == {"t-c": 2, "t-java": 5}, "a c job can run on both types"
    assert {row["tag"]: row["waiting"] for row in body["by_tag"]} == {"c": 2, "java": 3}
    assert {row["platform"]: row["waiting"] for row in body["by_platform"]} == {
        "first": 2,
        "platform2": 3,
    }
    assert body["throughput"] == {"window_sec": 300, "finished": 0, "per_minute": 0.0}


def test_a_platform_sees_only_its_own_jobs_and_each_token_once(queue):
    mine = queue.platform("mine")
    other = queue.platform("other")
    send(queue, mine, "c", 1)
    send(queue, other, "c", 4)
    token = bearer_jws(mine, queue.settings.key_name)

    answer = get(queue, "/api/v1/queue", token)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["waiting"] == 1
    assert [row["platform"] for row in body["by_platform"]] == ["mine"]

    replayed = get(queue, "/api/v1/queue", token)
    assert replayed.status_code == 401
    assert replayed.mimetype == PROBLEM


def test_the_cli_lists_and_revokes_tokens_without_showing_them(queue):
    token = api_token(queue, "grafana", "read")
    listed = run_cli(["api-token", "list"], env=queue.env).stdout
    assert "grafana\tread" in listed and token not in listed
    assert get(queue, "/api/v1/queue", token).status_code == 200

    run_cli(["api-token", "revoke", "grafana"], env=queue.env)
    refused = get(queue, "/api/v1/queue", token)
    assert refused.status_code == 401
    assert refused.get_json()["detail"] == "Unknown or revoked API token."
    assert run_cli(["api-token", "list"], env=queue.env).stdout.strip() == "No API tokens."
    again = run_cli(["api-token", "revoke", "grafana"], env=queue.env, check=False)
    assert again.returncode != 0 and "No API token" in again.stderr


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"claims": {"aud": "someone-else"}}, "aud must be"),
        ({"claims": {"iss": "other"}}, "iss must be"),
        ({"claims": {"exp": int(time.time()) + 3600}}, "lives too long"),
        ({"claims": {"iat": 1_000_000_000, "exp": 1_000_000_100}}, "expired"),
        ({"claims": {"jti": ""}}, "needs a jti"),
        ({"claims": {"iat": "now"}}, "numeric iat and exp"),
        ({"claims": {"iat": 10**400, "exp": 10**400}}, "numeric iat and exp"),
        ({"header": {"kid": "nobody"}}, "Unknown platform"),
        ({"key": jwk.JWK.generate(kty="RSA", size=2048)}, "does not verify"),
    ],
)
def test_bad_platform_tokens_are_refused_and_change_nothing(queue, change, detail):
    platform = queue.platform("p")
    token = bearer_jws(platform, queue.settings.key_name, **change)
    before = queue.snapshot()
    answer = get(queue, "/api/v1/queue", token)
    assert answer.status_code == 401
    assert answer.mimetype == PROBLEM
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    problem = answer.get_json()
    assert problem["status"] == 401 and problem["title"] == "No valid API credentials."
    assert detail in problem["detail"], problem
    assert queue.snapshot() == before


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Basic dXNlcjpwdw==", "Bearer", "Bearer nonsense", "Bearer a.b.c", "Bearer gqa_x"],
)
def test_missing_or_malformed_credentials_get_401_problem(queue, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = queue.app.test_client().get("/api/v1/queue", headers=headers)
    assert answer.status_code == 401
    assert answer.mimetype == PROBLEM
    assert set(answer.get_json()) == {"type", "title", "status", "detail"}


def test_an_hs256_token_is_refused(queue):
    """Only RS512: a token MACed with a key anyone could guess must not pass."""
    platform = queue.platform("p")
    key = jwk.JWK.from_pem(platform.public_pem.encode())
    secret = jwk.JWK(kty="oct", k=jws.base64url_encode(key.export_to_pem()))
    token = bearer_jws(platform, queue.settings.key_name, key=secret, header={"alg": "HS256"})
    answer = get(queue, "/api/v1/queue", token)
    assert answer.status_code == 401
    assert "RS512" in answer.get_json()["detail"]


def test_unknown_api_paths_are_problems_and_the_old_api_is_untouched(queue):
    token = api_token(queue)
    missing = get(queue, "/api/v1/nothing-here", token)
    assert missing.status_code == 404 and missing.mimetype == PROBLEM
    wrong_method = queue.app.test_client().post("/api/v1/queue")
    assert wrong_method.status_code == 405 and wrong_method.mimetype == PROBLEM
    assert wrong_method.get_json()["status"] == 405
    # The PHP-compatible /api and /api.php still answer 200 with errorcode.
    old = queue.app.test_client().post("/api.php", data={})
    assert old.status_code == 200 and old.get_json()["errorcode"] == 2


def test_a_token_signed_by_another_jose_library_is_accepted(queue):
    """joserfc, not the queue's jwcrypto, makes the platform's bearer token."""
    from joserfc import jws as rfc_jws
    from joserfc.jwk import RSAKey

    platform = queue.platform("rfc")
    send(queue, platform, "c", 1)
    now = int(time.time())
    claims = {
        "iss": "rfc",
        "aud": queue.settings.key_name,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    key = RSAKey.import_key(platform.private_pem)
    token = rfc_jws.serialize_compact(
        {"alg": "RS512", "kid": "rfc"}, json.dumps(claims).encode(), key, algorithms=["RS512"]
    )
    answer = get(queue, "/api/v1/queue", token)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["waiting"] == 1
