"""Secrets never show in logs, answers or the database.

A real gunicorn serves a run of good and bad requests: platform tokens
(good, tampered, replayed, oversized, for the wrong platform, with other
algorithms), server tokens (good and wrong), a remote user's password (right
and wrong), the debug password (right and wrong), and one request that makes
the app log an internal error with its traceback. Then gunicorn's error,
console and access logs, every answer and every table are searched for the
queue's private key, the platforms' private keys, the tokens and the
passwords.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import requests
from jwcrypto import jwe, jwk, jws

from graderqueue.identity import passwords
from graderqueue.protocol import keys, tokens
from graderqueue.store.models import RemoteUser
from harness.queue import QueueSetup

DEBUG_PASSWORD = "dbg-Xq7Lw2Rk9Pz4Mv"
REMOTE_PASSWORD = "rmt-Jh3Nc8Ty5Bd1Fs"


def private_material(private_pem: str) -> list[str]:
    """PEM body lines and the JWK private numbers of a key."""
    lines = [line for line in private_pem.splitlines() if line and not line.startswith("-----")]
    exported = json.loads(jwk.JWK.from_pem(private_pem.encode()).export_private())
    return lines + [exported[name] for name in ("d", "p", "q", "dp", "dq", "qi")]


def token_material(token: str) -> list[str]:
    """A token, and the parts that are its own (the header is the same in all of them)."""
    parts = token.split(".")
    return [token] + [part[:40] for part in parts[1:] if len(part) >= 40]


@pytest.mark.queue_settings(debug_password=DEBUG_PASSWORD)
def test_no_secret_in_logs_answers_or_tables(sqlite_queue: QueueSetup) -> None:
    queue = sqlite_queue
    platform = queue.platform("plat")
    fresh = queue.platform("fresh", require_fresh=True)
    server_token = queue.server_token("t-c", name="cloud")
    with queue.db.transaction() as session:
        session.add(
            RemoteUser(username="alice", password_hash=passwords.hash_password(REMOTE_PASSWORD))
        )
    server = queue.gunicorn(workers=2, threads=8)
    url = server.url
    key_dir, kid = queue.settings.resolved_key_dir, queue.settings.key_name
    queue_private = (key_dir / f"{kid}.pem").read_text()
    queue_public = jwk.JWK.from_pem((key_dir / f"{kid}.pub.pem").read_bytes())

    sent_tokens: list[str] = []
    answers: list[str] = []

    def post(path: str, **form: str) -> dict[str, Any]:
        response = requests.post(url + path, data=form, timeout=30)
        answers.append(response.text)
        assert response.status_code == 200, response.text
        return response.json()

    def seal(
        payload: dict[str, Any], signer: str = platform.private_pem, name: str = "plat"
    ) -> str:
        token = tokens.seal(payload, jwk.JWK.from_pem(signer.encode()), name, queue_public, kid)
        sent_tokens.append(token)
        return token

    job = {"request": "sendjob", "jobdata": json.dumps({"taskPath": "/t"}), "tags": "c"}

    # Good platform requests.
    queued = post("/api.php", sToken=seal(job), sPlatform="plat")
    assert queued["errorcode"] == 0
    jobid = str(queued["jobid"])
    assert (
        post("/api.php", sToken=seal({"request": "getjob", "jobid": jobid}), sPlatform="plat")[
            "errorcode"
        ]
        == 0
    )

    # A fresh token, then its replay.
    now = int(time.time())
    claims = {"iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    replayed = seal({"request": "test", **claims}, fresh.private_pem, "fresh")
    assert post("/api.php", sToken=replayed, sPlatform="fresh")["errorcode"] == 0
    assert "replayed" in post("/api.php", sToken=replayed, sPlatform="fresh")["errormsg"]

    # Bad tokens of every kind.
    good = seal({"request": "test"})
    head, cek, iv, ciphertext, tag = good.split(".")
    tampered = ".".join([head, cek, iv, ciphertext[:-8] + "AAAAAAAA", tag])
    oversized = ".".join([head, cek, iv, ciphertext + "B" * (1024 * 1024), tag])
    other_private, _ = keys.generate_rsa_pem()
    wrong_signer = seal(job, other_private.decode())
    signer = jws.JWS(json.dumps(job).encode())
    signer.add_signature(
        jwk.JWK.from_pem(platform.private_pem.encode()),
        None,
        json.dumps({"alg": "RS256", "kid": "plat"}),
        None,
    )
    rsa1_5 = jwe.JWE(
        signer.serialize(compact=True).encode(),
        json.dumps({"alg": "RSA1_5", "enc": "A256CBC-HS512", "kid": kid}),
        algs=["RSA1_5", "A256CBC-HS512"],
    )
    rsa1_5.add_recipient(queue_public)
    foreign = rsa1_5.serialize(compact=True)
    sent_tokens += [tampered, foreign]
    for bad, name in [
        (tampered, "plat"),
        (good, "fresh"),
        (wrong_signer, "plat"),
        (foreign, "plat"),
        (oversized, "plat"),
        ("garbage" + good[:200], "plat"),
    ]:
        assert post("/api.php", sToken=bad, sPlatform=name)["errorcode"] == 2

    # Grading servers: a good token, a wrong one.
    polled = post("/poll.php", server_token=server_token, nbtasks="0")
    assert polled["errorcode"] == 0
    assert post("/poll.php", server_token=server_token[:-4] + "xxxx")["errorcode"] == 3
    result = json.dumps({"errorcode": 0, "jobdata": {}})
    done = post("/sendresults.php", server_token=server_token, jobid=jobid, resultdata=result)
    assert done["errorcode"] == 0
    # One that makes the app log an internal error with its traceback (a known
    # bug, see scripts/fuzz_tokens.py KNOWN_ISSUES): logs must stay clean then too.
    post("/api.php", sToken=seal(job | {"jobusertaskid": "2"}), sPlatform="plat")
    post("/poll.php", server_token=server_token, nbtasks="0")
    post("/sendresults.php", server_token=server_token, jobid=str(int(jobid) + 1),
         resultdata="[" * 5000)  # fmt: skip

    # A remote user and the debug password, right and wrong.
    remote = {"rRequest": json.dumps({"request": "test"}), "rUsername": "alice"}
    assert post("/api.php", **remote, rPassword=REMOTE_PASSWORD)["errorcode"] == 0
    assert post("/api.php", **remote, rPassword=REMOTE_PASSWORD + "x")["errorcode"] == 2
    assert post("/api.php", request="test", debugPassword=DEBUG_PASSWORD)["errorcode"] == 0
    assert post("/api.php", request="test", debugPassword=DEBUG_PASSWORD[:-1])["errorcode"] == 2

    server.stop()
    logs = server.log_text()
    assert logs.count("POST /api.php") >= 15, logs[-2000:]  # the logs we search are real

    secrets = {
        "queue private key": private_material(queue_private),
        "platform private key": private_material(platform.private_pem),
        "fresh platform private key": private_material(fresh.private_pem),
        "server token": [server_token],
        "remote password": [REMOTE_PASSWORD],
        "debug password": [DEBUG_PASSWORD],
        "platform tokens": [m for t in sent_tokens for m in token_material(t)],
    }
    tables = repr(queue.snapshot())
    for what, values in secrets.items():
        for value in values:
            assert value not in logs, f"{what} in gunicorn's logs"
            for answer in answers:
                assert value not in answer, f"{what} in an answer: {answer[:200]}"
            if what != "platform tokens":
                assert value not in tables, f"{what} in the database"
    for answer in answers:
        assert "Traceback" not in answer and 'File "' not in answer, answer[:300]


def raw_request(port: int, request_line: str) -> bytes:
    """Send one request line as given (even a malformed one); the raw answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"{request_line}\r\nHost: queue.test\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while data := sock.recv(65536):
            received += data
    return received


def test_secrets_in_a_query_string_stay_out_of_gunicorns_logs(sqlite_queue: QueueSetup) -> None:
    """Issue 11 item 10: GET /poll.php?server_token=... showed the token in the access log.

    gunicorn runs with examples/gunicorn.conf.py, whose logger class redacts
    secret-named query values in the access log and in the error log (which
    quotes a malformed request line whole).
    """
    queue = sqlite_queue
    server_token = queue.server_token("t-c", name="cloud")
    secrets = {
        "server_token": server_token,
        "sToken": "stok-Vq3Zx8Lp1Mn6",
        "rPassword": REMOTE_PASSWORD,
        "debugPassword": DEBUG_PASSWORD,
        "token": "tok-Hb5Wd2Qs9Kf4",
        "encoded": "enc-Ry7Tg3Jc6Pa1",
        "malformed": "bad-Ue4Xn1Vo8Ci5",
    }
    server = queue.gunicorn(workers=1, threads=4)
    url = server.url
    queries = [
        ("/poll.php", f"server_token={server_token}&nbtasks=0"),
        ("/api.php", f"sPlatform=plat&sToken={secrets['sToken']}"),
        ("/api.php", f"rUsername=alice&rPassword={secrets['rPassword']}&request=test"),
        ("/api.php", f"request=test&debugPassword={secrets['debugPassword']}"),
        ("/sendresults.php", f"jobid=1;token={secrets['token']}"),
    ]
    for path, query in queries:
        response = requests.get(f"{url}{path}?{query}", timeout=30)
        assert response.status_code == 200, response.text
    # werkzeug decodes the name, so the logger must too (requests would
    # normalize %5F, hence a raw socket).
    line = f"GET /poll.php?server%5Ftoken={secrets['encoded']} HTTP/1.1"
    assert raw_request(server.port, line).startswith(b"HTTP/1.1 200")
    # A request line gunicorn refuses (two spaces): its error log quotes the line.
    line = f"GET  /poll.php?server_token={secrets['malformed']} HTTP/1.1"
    assert raw_request(server.port, line).startswith(b"HTTP/1.1 400")

    server.stop()
    logs = server.log_text()
    assert logs.count("GET /poll.php?server_token=[redacted]&nbtasks=0") == 1, logs[-3000:]
    assert "Invalid HTTP request line" in logs and "server%5Ftoken=[redacted]" in logs, logs
    assert logs.count("[redacted]") == len(queries) + 2, logs[-3000:]
    assert "nbtasks=0" in logs and "rUsername=alice" in logs  # the rest of the query stays
    for what, value in secrets.items():
        assert value not in logs, f"{what} in gunicorn's logs:\n{logs[-3000:]}"
