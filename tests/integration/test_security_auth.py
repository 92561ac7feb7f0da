"""Ways in besides platform tokens: certificate headers (believed only from a
trusted proxy), the debug password (off unless configured), and a fresh
token replayed many times at once against real gunicorn workers.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from jwcrypto import jwk

from graderqueue.protocol import tokens
from harness.queue import QueueSetup

SERIAL = "6A3BE20E85356D8116A9E6475A8B3801"
ISSUER = "CN=graderqueue CA,O=graderqueue"
FORGED = {
    "X-SSL-Client-Verify": "SUCCESS",
    "X-SSL-Client-Serial": SERIAL,
    "X-SSL-Client-I-DN": ISSUER,
}
JOB = {"taskPath": "/tasks/a"}


def post(url: str, path: str, data: dict[str, str], headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    response = requests.post(url + path, data=data, headers=headers or {}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


# -- certificate headers straight to gunicorn -------------------------------------


@pytest.mark.parametrize(
    "trusted",
    ["", "10.255.255.1/32", "10.0.0.0/8,192.168.1.1"],
    ids=["no-proxy-trusted", "another-address", "other-networks"],
)
def test_forged_certificate_headers_straight_to_gunicorn_are_not_believed(
    sqlite_queue: QueueSetup, trusted: str
) -> None:
    sqlite_queue.cert_server("grader-1", "t-c", SERIAL, ISSUER)
    client = sqlite_queue.client_for(sqlite_queue.platform("plat"))
    client.sendjob(JOB, tags="c")
    server = sqlite_queue.gunicorn(workers=1, threads=4, GRADERQUEUE_TRUSTED_PROXIES=trusted)
    before = sqlite_queue.snapshot()
    for path, form in [
        ("/poll.php", {"nbtasks": "0"}),
        ("/test.php", {}),
        ("/sendresults.php", {"jobid": "1", "resultdata": json.dumps({"errorcode": 0})}),
    ]:
        answer = post(server.url, path, form, FORGED)
        assert answer == {"errorcode": 3, "errormsg": "No valid authentication provided."}, path
    assert sqlite_queue.snapshot() == before


def test_the_same_headers_from_a_trusted_proxy_are_believed(sqlite_queue: QueueSetup) -> None:
    """The control for the test above: the headers are right, only the source differs.

    So anyone who can reach gunicorn from a trusted address can claim any
    certificate: keep gunicorn on 127.0.0.1 or a network only nginx reaches.
    """
    sqlite_queue.cert_server("grader-1", "t-c", SERIAL, ISSUER)
    client = sqlite_queue.client_for(sqlite_queue.platform("plat"))
    jobid = client.sendjob(JOB, tags="c")
    server = sqlite_queue.gunicorn(workers=1, threads=4, GRADERQUEUE_TRUSTED_PROXIES="127.0.0.1")
    answer = post(server.url, "/poll.php", {"nbtasks": "0"}, FORGED)
    assert answer["errorcode"] == 0
    assert answer["jobid"] == jobid
    # Not SUCCESS: the proxy says the certificate did not verify.
    for verify in ("NONE", "FAILED:certificate has expired", "success", ""):
        headers = {**FORGED, "X-SSL-Client-Verify": verify}
        assert post(server.url, "/test.php", {}, headers)["errorcode"] == 3, verify


def test_a_trusted_proxy_cannot_name_a_server_with_garbage(sqlite_queue: QueueSetup) -> None:
    """X-Real-IP becomes a token server's name and wake-up address: only an IP will do."""
    token = sqlite_queue.server_token("t-c", name="cloud")
    server = sqlite_queue.gunicorn(workers=1, threads=4, GRADERQUEUE_TRUSTED_PROXIES="127.0.0.1")
    form = {"server_token": token}
    real = post(server.url, "/test.php", form, {"X-Real-IP": "198.51.100.7"})
    assert real["errormsg"].startswith("Connected as server cloud-198.51.100.7 ")
    junk = post(server.url, "/test.php", form, {"X-Real-IP": "x" * 300 + "</script>"})
    assert junk["errormsg"].startswith("Connected as server cloud-127.0.0.1 ")


# -- debug password ---------------------------------------------------------------


DEBUG_FORM = {"request": "test", "debugPassword": "letmein"}


def test_the_debug_password_is_off_by_default(queue: QueueSetup) -> None:
    assert queue.settings.debug_password == ""
    before = queue.snapshot()
    for password in ("letmein", "", " ", "None", "null"):
        answer = queue.post("/api.php", **{**DEBUG_FORM, "debugPassword": password})
        assert answer == {"errorcode": 2, "errormsg": "No valid authentication provided."}
    sendjob = {"request": "sendjob", "jobdata": json.dumps(JOB), "debugPassword": "letmein"}
    assert queue.post("/api.php", **sendjob)["errorcode"] == 2
    assert queue.snapshot() == before


@pytest.mark.queue_settings(debug_password="letmein")
def test_a_configured_debug_password_acts_as_platform_one(queue: QueueSetup) -> None:
    assert queue.post("/api.php", **DEBUG_FORM) == {
        "errorcode": 0,
        "errormsg": "Connected as platform id 1",
    }
    before = queue.snapshot()
    for wrong in ("letmein ", "LETMEIN", "letme", ""):
        answer = queue.post("/api.php", **{**DEBUG_FORM, "debugPassword": wrong})
        assert answer["errorcode"] == 2, wrong
    assert queue.snapshot() == before
    sendjob = {"request": "sendjob", "jobdata": json.dumps(JOB), "tags": "c"}
    queued = queue.post("/api.php", **sendjob, debugPassword="letmein")
    assert queued["errorcode"] == 0
    assert queue.post("/api.php", request="getjob", jobid=str(queued["jobid"]),
                      debugPassword="letmein")["data"]["received_from"] == 1  # fmt: skip


# -- a replayed fresh token, many times at once ---------------------------------------


def test_concurrent_replays_of_a_fresh_token_are_accepted_once(queue: QueueSetup) -> None:
    platform = queue.platform("fresh", require_fresh=True)
    server = queue.gunicorn(workers=2, threads=8)
    queue_key = jwk.JWK.from_pem(
        (queue.settings.resolved_key_dir / f"{queue.settings.key_name}.pub.pem").read_bytes()
    )
    now = int(time.time())
    payload = {
        "request": "sendjob",
        "jobdata": json.dumps(JOB),
        "tags": "c",
        "jobusertaskid": "once",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    token = tokens.seal(
        payload,
        jwk.JWK.from_pem(platform.private_pem.encode()),
        "fresh",
        queue_key,
        queue.settings.key_name,
    )
    form = {"sToken": token, "sPlatform": "fresh"}
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: post(server.url, "/api.php", form), range(12)))
    accepted = [a for a in answers if a["errorcode"] == 0]
    assert len(accepted) == 1, answers
    for answer in answers:
        if answer["errorcode"] != 0:
            assert answer["errorcode"] in (1, 2), answer
            assert "Internal error" not in answer["errormsg"], answer
    assert sum("replayed" in a["errormsg"] for a in answers) >= 1
    # The job was queued exactly once.
    assert (
        queue.client_for(platform, fresh=True).getjob(accepted[0]["jobid"])["data"]["job_repeats"]
        == 0
    )
