"""GET /api/v1/jobs/{id}/events through real gunicorn: a job's life as Server-Sent
Events, resuming with Last-Event-ID, the bound on open streams, and (MariaDB)
changes made on one app node seen by a stream on the other."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import requests

from harness.queue import QueueSetup
from tests.integration.test_api_v1_auth import api_token

RESULT = json.dumps({"errorcode": 0, "errormsg": "ok", "jobdata": {}})
FAST = {"GRADERQUEUE_EVENTS_POLL_SEC": "0.1", "GRADERQUEUE_EVENTS_KEEPALIVE_SEC": "1"}


def events(response: requests.Response) -> Iterator[tuple[str, dict]]:
    """(event id, data) of each status_update; comments and retry lines skipped."""
    event_id, kind = "", ""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            assert kind == "status_update"
            yield event_id, json.loads(line[6:])


def open_stream(url: str, token: str, job_id: int, last_id: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    answer = requests.get(
        f"{url}/api/v1/jobs/{job_id}/events", headers=headers, stream=True, timeout=30
    )
    return answer


def submit(url: str, token: str, **fields) -> int:  # type: ignore[no-untyped-def]
    body = {"jobdata": {"taskPath": "/t"}, "tags": "c", "jobusertaskid": uuid.uuid4().hex, **fields}
    answer = requests.post(
        f"{url}/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_a_stream_follows_a_job_from_queued_to_finished(queue):
    node = queue.gunicorn(workers=1, threads=8, **FAST)
    token = api_token(queue, "ops", "write")
    ahead = submit(node.url, token, priority=5)
    job_id = submit(node.url, token)
    stream = open_stream(node.url, token, job_id)
    assert stream.status_code == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    server = queue.server_token("t-c")
    seen = []
    # Each step waits for the stream to show the previous one.
    for event_id, data in events(stream):
        seen.append((event_id, data["type"], data["data"]))
        if (data["type"], data["data"]) == ("position", 1):
            assert queue.post("/poll.php", server_token=server, nbtasks="0")["jobid"] == ahead
            finish(queue, server, ahead)
        elif (data["type"], data["data"]) == ("position", 0):
            assert queue.post("/poll.php", server_token=server, nbtasks="0")["jobid"] == job_id
        elif (data["type"], data["data"]) == ("state", "STARTED"):
            finish(queue, server, job_id)
    assert seen == [
        ("QUEUED:", "state", "QUEUED"),
        ("QUEUED:1", "position", 1),
        ("QUEUED:0", "position", 0),
        ("STARTED:", "state", "STARTED"),
        ("FINISHED:", "state", "FINISHED"),
    ], "and the stream ends after a terminal state"


def finish(queue, server: str, job_id: int) -> None:  # type: ignore[no-untyped-def]
    done = queue.post("/sendresults.php", server_token=server, jobid=str(job_id), resultdata=RESULT)
    assert done["errorcode"] == 0, done


def test_last_event_id_sends_only_what_changed_and_streams_are_bounded(queue):
    node = queue.gunicorn(workers=1, threads=8, GRADERQUEUE_EVENTS_MAX_STREAMS="2", **FAST)
    token = api_token(queue, "ops", "write")
    job_id = submit(node.url, token)
    # The client was told QUEUED, position 0: nothing new until the job changes.
    first = open_stream(node.url, token, job_id, last_id="QUEUED:0")
    second = open_stream(node.url, token, job_id)
    third = open_stream(node.url, token, job_id)
    assert third.status_code == 503, "a worker serves at most events_max_streams"
    assert third.headers["Content-Type"] == "application/problem+json"
    second.close()
    requests.post(
        f"{node.url}/api/v1/jobs/{job_id}/cancel",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).raise_for_status()
    assert [d for _i, d in events(first)] == [{"type": "state", "data": "CANCELLED"}]


@pytest.mark.mariadb
def test_a_change_on_one_node_reaches_a_stream_on_the_other(mariadb_url, tmp_path):
    queue = QueueSetup(tmp_path / "instance", mariadb_url)
    try:
        queue.tag("c")
        queue.server_type("t-c", ["c"])
        node_a = queue.gunicorn(workers=1, threads=8, **FAST)
        node_b = queue.gunicorn(workers=1, threads=8, **FAST)
        token = api_token(queue, "ops", "write")
        job_id = submit(node_b.url, token)
        got = events(open_stream(node_a.url, token, job_id))
        assert [next(got)[1], next(got)[1]] == [
            {"type": "state", "data": "QUEUED"},
            {"type": "position", "data": 0},
        ]
        for action in ("hold", "cancel"):
            requests.post(
                f"{node_b.url}/api/v1/jobs/{job_id}/{action}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).raise_for_status()
            expected = "HELD" if action == "hold" else "CANCELLED"
            assert next(got)[1] == {"type": "state", "data": expected}
        assert list(got) == [], "the stream ends after CANCELLED"
    finally:
        queue.close()
