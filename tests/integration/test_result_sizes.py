"""Result sizes agree end to end, and result tokens open with other JOSE libraries' defaults.

The chain: the grading server's output cap (graderserver max_output_bytes),
the queue's max_result_bytes at /sendresults.php, the result token, and the
platform client's limit when it opens that token. Tokens are compressed only
when the JWS inside is at most result_zip_max_bytes, because JOSE libraries
cap what they inflate (joserfc and Node's jose at about 250,000 bytes).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import date
from typing import Any

import pytest
from joserfc import jwe as rfc_jwe
from joserfc import jws as rfc_jws
from joserfc.jwk import RSAKey
from jwcrypto import jwk
from sqlalchemy import select

from graderqueue import client
from graderqueue.config import Settings, load_settings
from graderqueue.errors import ConfigError, TokenError
from graderqueue.protocol import keys, results, tokens
from graderqueue.protocol.keys import QueueKey
from graderqueue.store.models import Delivery, DeliveryState, Job, JobStatus, Result
from graderserver.config import Config as DaemonConfig
from tests.integration.test_delivery import make_lane, queue_keys

MIB = 1024 * 1024


def grader_output(size: int, seed: int = 1) -> dict[str, Any]:
    """A grader's result of at least ``size`` bytes of compact JSON: test reports with output."""
    rng = random.Random(seed)
    reports: list[dict[str, Any]] = []
    data = {"executions": [{"name": "exec", "testsReports": reports}], "score": 42}
    chunk = "".join(rng.choice("abcdefghij 0123456789\n") for _ in range(4000))
    while tokens.result_json_bytes(data) < size:
        reports.append({"name": f"test{len(reports):05d}", "output": chunk[: rng.randint(1, 400)]})
    return data


def exactly(size: int) -> dict[str, Any]:
    """A result of exactly ``size`` bytes of compact JSON."""
    data = {"pad": ""}
    data["pad"] = "x" * (size - tokens.result_json_bytes(data))
    assert tokens.result_json_bytes(data) == size
    return data


def open_with_joserfc(token: str, platform_private_pem: str, queue_public_pem: str) -> dict:
    """Open a result token with joserfc, an independent JOSE library.

    Its inflate limit (250 KiB, not configurable) stays at its default. Its
    registry refuses any JWE over about 64 KiB and any JWS payload over
    128,000 bytes by default, compressed or not: a platform raises those two
    for results of that size, whatever the queue does.
    """
    encryption = rfc_jwe.JWERegistry(algorithms=["RSA-OAEP-256", "A256CBC-HS512", "DEF"])
    encryption.max_ciphertext_length = 64 * MIB
    decrypted = rfc_jwe.decrypt_compact(
        token, RSAKey.import_key(platform_private_pem), registry=encryption
    )
    signing = rfc_jws.JWSRegistry(algorithms=["RS512"])
    signing.max_payload_length = 64 * MIB
    verified = rfc_jws.deserialize_compact(
        decrypted.plaintext, RSAKey.import_key(queue_public_pem), registry=signing
    )
    return json.loads(verified.payload)


@pytest.mark.queue_settings(delivery_enabled=False)
def test_a_535_kb_result_reaches_the_platform_and_opens_with_joserfc_defaults(queue):
    lane = make_lane(queue)
    jobdata = grader_output(535_000)
    jobid = lane.finish_job("big-result", jobdata)
    small_id = lane.finish_job("small-result", {"score": 100})
    with lane.endpoint:
        assert lane.worker().run_pass() == Counter({DeliveryState.DELIVERED: 2})
    arrivals = {a.payload["sTaskName"]: a for a in lane.endpoint.arrivals if a.payload}
    assert sorted(arrivals) == ["big-result", "small-result"]  # both opened by the client
    assert arrivals["big-result"].payload["sResultData"] == jobdata
    queue_pem = queue_keys(queue).active.public_pem

    big = arrivals["big-result"].token
    assert "zip" not in tokens.compact_header(big, 5)  # its JWS is over 250,000 bytes
    opened = open_with_joserfc(big, lane.platform.private_pem, queue_pem)
    assert opened["sTaskName"] == "big-result" and opened["sResultData"] == jobdata

    # A small result is still compressed, and joserfc opens it with all its defaults.
    small = arrivals["small-result"].token
    assert tokens.compact_header(small, 5)["zip"] == "DEF"
    private = RSAKey.import_key(lane.platform.private_pem)
    inner = rfc_jwe.decrypt_compact(
        small, private, algorithms=["RSA-OAEP-256", "A256CBC-HS512", "DEF"]
    )
    signed = rfc_jws.deserialize_compact(inner.plaintext, RSAKey.import_key(queue_pem), "RS512")
    assert json.loads(signed.payload)["sResultData"] == {"score": 100}
    assert {delivery_state(queue, i) for i in (jobid, small_id)} == {DeliveryState.DELIVERED}


def delivery_state(queue, job_id: int) -> str:  # type: ignore[no-untyped-def]
    return queue.rows(select(Delivery.state).where(Delivery.job_id == job_id))[0][0]


def test_the_compression_rule_follows_the_jws_size_and_the_setting():
    queue_private, queue_public = keys.generate_rsa_pem()
    _, platform_public = keys.generate_rsa_pem()
    key = QueueKey("graderqueue", jwk.JWK.from_pem(queue_private), queue_public.decode())

    def header(jobdata: Any, zip_max: int | None) -> dict[str, Any]:
        payload = results.result_payload("job", json.dumps({"jobdata": jobdata}), date.today())
        token = results.result_token(payload, key, "plat", platform_public.decode(), zip_max)
        return tokens.compact_header(token, 5)

    small, large = exactly(1000), exactly(200_000)  # JWS about 1.4 KB and 267 KB
    assert header(small, Settings.result_zip_max_bytes)["zip"] == "DEF"
    assert "zip" not in header(large, Settings.result_zip_max_bytes)
    assert "zip" not in header(small, 0)  # 0: never compressed
    assert header(large, None)["zip"] == "DEF"  # requests to the queue: always


def test_the_client_opens_the_largest_result_the_queue_takes_by_default():
    """8 MiB of result, uncompressed, with the longest job name of escapes: it opens."""
    assert DaemonConfig.max_output_bytes == Settings.max_result_bytes == 8 * MIB
    queue_private, queue_public = keys.generate_rsa_pem(4096)
    platform_private, platform_public = keys.generate_rsa_pem(4096)
    jobdata = exactly(Settings.max_result_bytes)
    payload = {"sTaskName": "\u2028" * 255, "sResultData": jobdata, "date": "06-12-2026"}
    token = tokens.seal(
        payload,
        jwk.JWK.from_pem(queue_private),
        "graderqueue",
        jwk.JWK.from_pem(platform_public),
        "plat",
        zip_max_bytes=Settings.result_zip_max_bytes,
    )
    assert len(token) <= tokens.result_token_max_bytes(Settings.max_result_bytes)
    platform = client.PlatformClient(
        "http://unused.invalid", "plat", platform_private.decode(), queue_public.decode()
    )
    assert platform.open_result(token)["sResultData"] == jobdata

    # A client told of a smaller limit refuses it, before any crypto.
    small = client.PlatformClient(
        "http://unused.invalid",
        "plat",
        platform_private.decode(),
        queue_public.decode(),
        max_result_bytes=MIB,
    )
    with pytest.raises(TokenError, match="larger than the limit"):
        small.open_result(token)


@pytest.mark.queue_settings(delivery_enabled=False, max_result_bytes=100_000)
def test_sendresults_refuses_a_result_over_max_result_bytes_and_changes_nothing(queue):
    lane = make_lane(queue)
    platform_client = queue.client_for(lane.platform)
    jobid = platform_client.sendjob({"taskPath": "/tasks/x"}, jobname="too-big", tags="c")
    polled = queue.post("/poll.php", server_token=lane.server_token, nbtasks="0")
    assert polled["jobid"] == jobid

    def send(jobdata: dict[str, Any]) -> dict[str, Any]:
        result = {"errorcode": 0, "errormsg": "ok", "jobdata": jobdata}
        return queue.post(
            "/sendresults.php",
            server_token=lane.server_token,
            jobid=str(jobid),
            resultdata=json.dumps(result),
        )

    answer = send(exactly(100_001))
    assert answer["errorcode"] == 2
    assert "over the limit of 100000 bytes" in answer["errormsg"]
    assert queue.rows(select(Job.status).where(Job.id == jobid)) == [(JobStatus.SENT,)]
    assert queue.rows(select(Result.job_id)) == []
    assert queue.rows(select(Delivery.id)) == []

    # At the limit: taken, delivered, and opened by a client that knows the limit.
    assert send(exactly(100_000)) == {"errorcode": 0, "errormsg": "Saved resultdata."}
    with lane.endpoint:
        assert lane.worker().run_pass() == Counter({DeliveryState.DELIVERED: 1})
    token = lane.endpoint.arrivals[0].token
    opened = client.open_result_token(
        token,
        platform_private_key=jwk.JWK.from_pem(lane.platform.private_pem.encode()),
        queue_public_key=jwk.JWK.from_pem(queue_keys(queue).active.public_pem.encode()),
        max_result_bytes=100_000,
    )
    assert opened["sResultData"] == exactly(100_000)


@pytest.mark.parametrize("value", [-1, 1024 * 1024 + 1])
def test_result_zip_max_bytes_is_bounded(value):
    with pytest.raises(ConfigError, match="result_zip_max_bytes"):
        load_settings({"result_zip_max_bytes": value}, environ={})
    assert load_settings({"result_zip_max_bytes": 0}, environ={}).result_zip_max_bytes == 0
