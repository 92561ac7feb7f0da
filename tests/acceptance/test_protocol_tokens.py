"""Acceptance: credentials, as an independent client sees them (PROTOCOL.md).

Platform tokens are made with joserfc, not the queue's jwcrypto. Every bad
token answers errorcode 2 and stores nothing; bad grading-server credentials
answer errorcode 3 "No valid authentication provided." and register nothing.
Every answer is HTTP 200 JSON (checked by the clients). No grading server
exists in this module's queue, so nothing changes the database behind a test's
back and a whole-database snapshot before and after a refusal must be equal.
"""

from __future__ import annotations

import json

import pytest

from harness.foreign_platform import (
    ForeignPlatform,
    ServedQueue,
    generate_rsa_pem,
    hs256_with_random_key,
    served_queue_for,
)
from harness.form_server import FormServer

JOB = {"taskPath": "/tasks/add", "extraParams": {"solutionLanguage": "c"}}
SENDJOB = {"request": "sendjob", "jobdata": json.dumps(JOB), "jobname": "bad-token", "tags": "c"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def served(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_queue_for(request, tmp_path_factory) as served:
        yield served


@pytest.fixture(scope="module")
def platform(served: ServedQueue) -> ForeignPlatform:
    return served.platform("honest")


@pytest.fixture(scope="module")
def other(served: ServedQueue) -> ForeignPlatform:
    return served.platform("other")


def refused(served: ServedQueue, send, message: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """Send a request that must be refused with errorcode 2, changing nothing."""
    before = served.snapshot()
    answer = send()
    assert answer["errorcode"] == 2, answer
    assert answer["errormsg"], answer
    if message is not None:
        assert answer["errormsg"] == message
    assert served.snapshot() == before
    return answer


# -- the well-made token, for contrast ------------------------------------------


def test_a_well_made_token_with_zip_is_accepted(platform: ForeignPlatform):
    assert platform.test() == {
        "errorcode": 0,
        "errormsg": f"Connected as platform id {platform.id}",
    }
    jobid = platform.queue_job(json.dumps(JOB), tags="c")
    assert json.loads(platform.job(jobid)["jobdata"]) == JOB


def test_a_token_without_zip_is_accepted(platform: ForeignPlatform):
    answer = platform.send_token(platform.token({"request": "test"}, zip=False))
    assert answer["errorcode"] == 0, answer
    jobid = platform.send_token(platform.token(SENDJOB, zip=False))["jobid"]
    assert json.loads(platform.job(jobid)["jobdata"]) == JOB


# -- no credentials -------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"request": "test"},
        {"request": "sendjob", "jobdata": json.dumps(JOB)},
        {"sPlatform": "honest"},
        {"sToken": "", "sPlatform": "honest"},
    ],
    ids=["empty", "plain-test", "plain-sendjob", "platform-only", "empty-token"],
)
def test_no_credentials(served: ServedQueue, platform: ForeignPlatform, form):
    refused(
        served,
        lambda: platform.post_form("/api.php", form),
        "No valid authentication provided.",
    )


# -- bad tokens ---------------------------------------------------------------


def _bad_tokens():  # type: ignore[no-untyped-def]
    """pytest params of function(platform, other) -> (sToken, sPlatform)."""
    stranger_private, stranger_public = generate_rsa_pem()

    def own(**kw):  # type: ignore[no-untyped-def]
        return lambda p, o: (p.token(SENDJOB, **kw), p.name)

    cases = [
        ("jws-RS256", own(jws_alg="RS256")),
        ("jws-RS384", own(jws_alg="RS384")),
        ("jws-PS512", own(jws_alg="PS512")),
        ("jws-HS256-public-key-as-secret", own(jws_alg="HS256")),
        (
            "jws-HS256-random-secret",
            lambda p, o: (p.encrypt(hs256_with_random_key(SENDJOB, p.name)), p.name),
        ),
        ("jws-none", own(jws_alg="none")),
        ("jwe-RSA1_5", own(jwe_alg="RSA1_5")),
        ("jwe-RSA-OAEP", own(jwe_alg="RSA-OAEP")),
        ("jwe-A128GCM", own(enc="A128GCM")),
        ("jwe-A256GCM", own(enc="A256GCM")),
        ("jwe-A128CBC-HS256", own(enc="A128CBC-HS256")),
        ("signed-with-a-stranger-key", own(sign_pem=stranger_private)),
        (
            "signed-with-the-other-platform-key",
            lambda p, o: (o.token(SENDJOB, jws_kid=p.name), p.name),
        ),
        ("encrypted-to-a-stranger-key", own(encrypt_pem=stranger_public)),
        pytest.param(own(jwe_kid="not-the-queue-key"), id="jwe-kid-not-the-queue-key"),
        ("jws-kid-names-other-platform", own(jws_kid="other")),
        ("other-platform-token-claims-this-platform", lambda p, o: (o.token(SENDJOB), p.name)),
        ("this-platform-token-claims-other-platform", lambda p, o: (p.token(SENDJOB), o.name)),
        ("unknown-platform", lambda p, o: (p.token(SENDJOB, jws_kid="ghost"), "ghost")),
        ("no-sPlatform", lambda p, o: (p.token(SENDJOB), "")),
        ("payload-not-json", own_payload(b"request=sendjob&jobname=x")),
        ("payload-json-array", own_payload(json.dumps([SENDJOB]))),
        ("payload-json-string", own_payload(json.dumps("sendjob"))),
        ("payload-json-number", own_payload(b"42")),
        ("jws-not-encrypted", lambda p, o: (p.sign(SENDJOB), p.name)),
        ("garbage", lambda p, o: ("not.a.token.at.all", p.name)),
        ("truncated", lambda p, o: (p.token(SENDJOB)[:-20], p.name)),
        ("oversized", lambda p, o: (p.oversized_token(), p.name)),
        ("decompresses-too-large", lambda p, o: (p.zip_bomb_token(), p.name)),
    ]
    return [pytest.param(c[1], id=c[0]) if type(c) is tuple else c for c in cases]


def own_payload(payload):  # type: ignore[no-untyped-def]
    return lambda p, o: (p.token(payload), p.name)


BAD_TOKENS = _bad_tokens()


@pytest.mark.parametrize("make", BAD_TOKENS)
def test_bad_token_is_refused_and_changes_nothing(
    served: ServedQueue, platform: ForeignPlatform, other: ForeignPlatform, make
):
    token, claimed = make(platform, other)
    refused(served, lambda: platform.send_token(token, platform=claimed))


def test_oversized_token_is_over_one_mib(platform: ForeignPlatform):
    assert len(platform.oversized_token()) > 1024 * 1024
    assert len(platform.zip_bomb_token()) < 64 * 1024


def test_each_kind_of_token_failure_says_which(platform: ForeignPlatform):
    """PROTOCOL.md: a bad token answers "with a message that says which"."""
    stranger_private, stranger_public = generate_rsa_pem()
    kinds = {
        "encryption algorithm": platform.token(SENDJOB, jwe_alg="RSA-OAEP"),
        "signature algorithm": platform.token(SENDJOB, jws_alg="RS256"),
        "encryption key": platform.token(SENDJOB, encrypt_pem=stranger_public),
        "signature": platform.token(SENDJOB, sign_pem=stranger_private),
        "JSON": platform.token(b"not json"),
        "size as sent": platform.oversized_token(),
        "size decompressed": platform.zip_bomb_token(),
    }
    messages = {kind: platform.send_token(token)["errormsg"] for kind, token in kinds.items()}
    assert len(set(messages.values())) == len(messages), messages


# -- grading-server authentication ------------------------------------------------


SERVER_REQUESTS = [
    ("test", {}),
    ("poll", {"nbtasks": "0"}),
    ("sendresults", {"jobid": "1", "resultdata": json.dumps({"errorcode": 0, "jobdata": {}})}),
]


@pytest.mark.parametrize("suffix", [".php", ""], ids=["php", "clean"])
@pytest.mark.parametrize("endpoint,fields", SERVER_REQUESTS, ids=[e for e, _ in SERVER_REQUESTS])
@pytest.mark.parametrize(
    "token", [None, "", "not-a-registered-token"], ids=["none", "empty", "wrong"]
)
def test_server_without_valid_credentials(served: ServedQueue, token, endpoint, fields, suffix):
    client = FormServer(served.url, token, suffix=suffix)
    before = served.snapshot()
    answer = client.post(endpoint, **fields)
    assert answer == {"errorcode": 3, "errormsg": "No valid authentication provided."}
    assert served.snapshot() == before


def test_platform_token_is_not_a_server_credential(served: ServedQueue, platform: ForeignPlatform):
    client = FormServer(served.url, None)
    before = served.snapshot()
    answer = client.post(
        "poll", sToken=platform.token({"request": "test"}), sPlatform=platform.name
    )
    assert answer == {"errorcode": 3, "errormsg": "No valid authentication provided."}
    assert served.snapshot() == before
