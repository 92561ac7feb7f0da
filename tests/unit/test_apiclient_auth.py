"""The client's bearer tokens: a platform's RS512 JWS as the queue checks it, an operator's
token as it is; and the command line's choice between them."""

from __future__ import annotations

import json
import time

import pytest
from jwcrypto import jwk, jws

from graderqueue.apiclient import SIGNED_LIFETIME_SEC, ApiError
from graderqueue.client import ClientError, OperatorToken, PlatformSigner
from graderqueue.client_cli import UsageError, _auth, build_parser
from graderqueue.config import load_settings
from graderqueue.errors import QueueError
from graderqueue.identity import api_callers
from graderqueue.protocol import keys


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    private, public = keys.generate_rsa_pem()
    return private.decode(), public.decode()


def opened(token: str, public_pem: str) -> tuple[dict, dict]:
    """The token's header and claims, after its signature verified with the public key."""
    signed = jws.JWS()
    signed.deserialize(token)
    signed.verify(jwk.JWK.from_pem(public_pem.encode()), alg="RS512")
    return signed.jose_header, json.loads(signed.payload)


def test_a_platform_token_is_an_rs512_jws_the_queue_accepts(key_pair):
    private, public = key_pair
    before = int(time.time())
    token = PlatformSigner("myplatform", private).bearer()
    assert token.count(".") == 2, "compact serialization"
    header, claims = opened(token, public)
    assert header == {"alg": "RS512", "kid": "myplatform"}
    assert set(claims) == {"iss", "aud", "iat", "exp", "jti"}
    assert (claims["iss"], claims["aud"]) == ("myplatform", "graderqueue")
    assert before <= claims["iat"] <= time.time()
    assert claims["exp"] == claims["iat"] + SIGNED_LIFETIME_SEC == claims["iat"] + 60
    assert len(claims["jti"]) == 32 and int(claims["jti"], 16) >= 0
    # The queue's own check of the claims (identity/api_callers.py) passes them.
    settings = load_settings({}, environ={})
    assert api_callers._claims_checked(claims, "myplatform", settings, time.time()) == claims


def test_each_request_gets_a_new_token_and_the_audience_is_the_queues_key_name(key_pair):
    private, public = key_pair
    signer = PlatformSigner("p", private.encode(), audience="queue-2027")
    tokens = [signer.bearer() for _ in range(3)]
    claims = [opened(t, public)[1] for t in tokens]
    assert len({c["jti"] for c in claims}) == 3, "the queue takes each jti once"
    assert {c["aud"] for c in claims} == {"queue-2027"}
    settings = load_settings({"key_name": "queue-2027"}, environ={})
    api_callers._claims_checked(claims[0], "p", settings, time.time())


def test_another_key_does_not_verify_it(key_pair):
    token = PlatformSigner("p", key_pair[0]).bearer()
    _, other_public = keys.generate_rsa_pem()
    with pytest.raises(jws.InvalidJWSSignature):
        opened(token, other_public.decode())


def test_an_operator_token_is_sent_as_it_is_and_never_shown():
    token = OperatorToken("gqa_secret-value")
    assert token.bearer() == "gqa_secret-value"
    assert "secret" not in repr(token)


def test_api_errors_are_queue_errors_with_the_problems_words():
    error = ApiError(409, "The job's state does not allow this.", "Job #4 is FINISHED.")
    assert isinstance(error, QueueError) and not isinstance(error, ClientError)
    assert (error.status, error.http_status) == (409, 409)
    assert str(error) == "HTTP 409: The job's state does not allow this. - Job #4 is FINISHED."


def auth_for(argv: list[str]):  # type: ignore[no-untyped-def]
    return _auth(build_parser().parse_args([*argv, "queue"]))


def test_the_command_line_prefers_options_then_a_token(key_pair, tmp_path, monkeypatch):
    pem = tmp_path / "p.pem"
    pem.write_text(key_pair[0])
    for name in ("API_TOKEN", "PLATFORM", "KEY", "AUDIENCE"):
        monkeypatch.delenv(f"GRADERQUEUE_{name}", raising=False)
    with pytest.raises(UsageError, match="who calls"):
        auth_for([])
    monkeypatch.setenv("GRADERQUEUE_PLATFORM", "envplatform")
    monkeypatch.setenv("GRADERQUEUE_KEY", str(pem))
    assert auth_for([]).name == "envplatform"
    monkeypatch.setenv("GRADERQUEUE_API_TOKEN", "gqa_env")
    assert auth_for([]).bearer() == "gqa_env", "both set: the operator's token"
    signer = auth_for(["--platform", "cli", "--audience", "q2"])
    assert (signer.name, signer.audience) == ("cli", "q2"), "an option beats the environment"
    assert auth_for(["--token", "gqa_cli"]).bearer() == "gqa_cli"
    with pytest.raises(UsageError, match="cannot read the key"):
        auth_for(["--platform", "cli", "--key", str(tmp_path / "missing.pem")])
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(UsageError, match="not a PEM private key"):
        auth_for(["--platform", "cli", "--key", str(tmp_path / "bad.pem")])
