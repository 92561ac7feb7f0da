"""Bodies over ``max_request_bytes`` are refused even without a Content-Length.

A chunked body sent straight to gunicorn has no Content-Length; werkzeug
then read up to the limit and handled the truncated body (issue 11, item
10). Here a raw socket sends chunked bodies to a real gunicorn: over the
limit, the protocol's "Request too large." and nothing stored; within it,
the request is handled as usual.
"""

from __future__ import annotations

import json
import socket

import pytest
from sqlalchemy import select

from graderqueue.store.models import Result
from harness.queue import QueueSetup

LIMIT = 64 * 1024


def chunked_post(port: int, path: str, body: bytes, chunk: int = 8192) -> dict:
    """POST ``body`` with Transfer-Encoding: chunked; the JSON answer (HTTP 200)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: queue.test\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        try:
            for start in range(0, len(body), chunk):
                part = body[start : start + chunk]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before reading it all
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), received[:300]
    return json.loads(payload)


def results_body(token: str, jobid: int, padding: int) -> bytes:
    result = json.dumps({"errorcode": 0, "jobdata": {"log": "x" * padding}})
    return f"server_token={token}&jobid={jobid}&resultdata={result}".encode()


@pytest.mark.queue_settings(max_request_bytes=LIMIT)
def test_a_chunked_body_over_the_limit_is_refused_and_stores_nothing(
    sqlite_queue: QueueSetup,
) -> None:
    queue = sqlite_queue
    platform = queue.platform("plat")
    token = queue.server_token("t-c")
    jobid = queue.client_for(platform).sendjob({"taskPath": "/t"}, tags="c")
    server = queue.gunicorn(workers=1, threads=4)
    polled = queue.post("/poll.php", server_token=token, nbtasks="0")
    assert polled["errorcode"] == 0 and polled["jobid"] == jobid, polled

    before = queue.snapshot()
    # Twice the limit, and just one byte over it.
    for size in (2 * LIMIT, LIMIT + 1):
        body = results_body(token, jobid, 0)
        body = results_body(token, jobid, size - len(body))
        assert len(body) == size
        answer = chunked_post(server.port, "/sendresults.php", body)
        assert answer == {"errorcode": 2, "errormsg": "Request too large."}
        assert queue.snapshot() == before

    # Within the limit, a chunked body is an ordinary request.
    body = results_body(token, jobid, LIMIT // 2)
    assert chunked_post(server.port, "/sendresults.php", body)["errorcode"] == 0
    stored = queue.scalar(select(Result.resultdata).where(Result.job_id == jobid))
    assert json.loads(stored)["jobdata"]["log"] == "x" * (LIMIT // 2)
