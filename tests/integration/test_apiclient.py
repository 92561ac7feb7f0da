"""graderqueue.apiclient and graderqueue-client against a real queue over real HTTP
(gunicorn), on both databases: a platform's job from submit to its artifacts, an
operator's actions, and the command line as a subprocess."""

from __future__ import annotations

import json
import os
import queue as queues
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from graderqueue.client import ApiClient, ApiError, OperatorToken, PlatformSigner
from harness.queue import environ_without_config
from tests.integration.test_api_v1_auth import api_token

RESULT = {"errorcode": 0, "errormsg": "ok", "jobdata": {"score": 1}}
WAIT = 60.0  # generous: a slow machine must not fail the test, a hang must
CLI = Path(sys.executable).with_name("graderqueue-client")


def signer(queue, platform) -> PlatformSigner:  # type: ignore[no-untyped-def]
    return PlatformSigner(platform.name, platform.private_pem, queue.settings.key_name)


def hand_out(queue, server_token: str) -> int:  # type: ignore[no-untyped-def]
    job = queue.post("/poll.php", server_token=server_token, nbtasks="0")
    assert job["errorcode"] == 0, job
    return job["jobid"]


def finish(queue, server_token: str, job_id: int) -> None:  # type: ignore[no-untyped-def]
    done = queue.post(
        "/sendresults.php",
        server_token=server_token,
        jobid=str(job_id),
        resultdata=json.dumps(RESULT),
        stdout="hello out",
    )
    assert done["errorcode"] == 0, done


def follow(api: ApiClient, job_id: int, **kw) -> queues.Queue:  # type: ignore[no-untyped-def]
    """The job's events as they come, read in a thread; None once the stream ended."""
    seen: queues.Queue = queues.Queue()

    def read() -> None:
        try:
            for event in api.events(job_id, **kw):
                seen.put(event)
        finally:
            seen.put(None)

    threading.Thread(target=read, daemon=True).start()
    return seen


def test_a_platform_sends_lists_follows_and_reads_its_job(queue):
    server = queue.gunicorn()
    api = ApiClient(server.url, signer(queue, queue.platform("first")))
    fields = {"tags": "c", "jobname": "one", "priority": 2, "idempotency_key": "k"}
    job_id = api.submit({"taskPath": "/t"}, **fields)
    assert api.submit({"taskPath": "/t"}, **fields) == job_id, "the same key: the same job"
    batch = api.submit_batch([{"jobdata": {"n": i}, "tags": ["c"]} for i in range(2)])
    assert len(batch) == 2 and job_id < batch[0] < batch[1]

    page = api.list_jobs(limit=2)
    assert [j.id for j in page.jobs] == [batch[1], batch[0]] and page.next_cursor
    assert [j.id for j in api.iter_jobs(limit=1)] == [batch[1], batch[0], job_id]
    assert [j.id for j in api.iter_jobs(name="one")] == [job_id]
    job = api.job(job_id)
    assert (job.state, job.name, job.tags, job.priority, job.platform) == (
        "QUEUED",
        "one",
        ("c",),
        2,
        "first",
    )
    assert job.received_at is not None and job.received_at.tzinfo is not None
    assert [e.event for e in job.timeline] == ["received"] and job.artifacts == ()
    assert (api.position(job_id).position, api.position(batch[0]).position) == (0, 1)

    assert api.cancel(batch[1]).state == "CANCELLED"
    with pytest.raises(ApiError) as refused:
        api.hold(batch[1])
    assert refused.value.status == 409 and refused.value.title and refused.value.detail

    events = follow(api, job_id)
    assert events.get(timeout=WAIT)[1:] == ("state", "QUEUED")
    assert events.get(timeout=WAIT)[1:] == ("position", 0)
    token = queue.server_token("t-c")
    assert hand_out(queue, token) == job_id
    assert events.get(timeout=WAIT)[1:] == ("state", "STARTED")
    finish(queue, token, job_id)
    last = events.get(timeout=WAIT)
    assert last[1:] == ("state", "FINISHED") and last.id
    assert events.get(timeout=WAIT) is None, "the stream ends after a terminal state"

    job = api.job(job_id)
    assert job.state == "FINISHED" and job.result == RESULT and job.finished_at is not None
    assert [e.event for e in job.timeline] == ["received", "handed_out", "finished"]
    assert "stdout" in [a.name for a in job.artifacts]
    assert api.artifact(job_id, "stdout") == b"hello out"
    assert json.loads(api.artifact(job_id, "result")) == RESULT
    with pytest.raises(ApiError) as missing:
        api.artifact(job_id, "stderr")
    assert missing.value.status == 404 and "stderr" in missing.value.detail


def test_an_operator_acts_by_filter_and_a_reader_may_not(queue):
    server = queue.gunicorn()
    platform = ApiClient(server.url, signer(queue, queue.platform("first")))
    ids = [platform.submit({"n": i}, tags="c", jobname="task-a") for i in range(2)]
    other = platform.submit({"n": 9}, tags="c", jobname="task-b")
    ops = ApiClient(server.url, OperatorToken(api_token(queue, "ops", "write")))

    dry = ops.act("hold", {"name": "task-a", "state": "QUEUED"}, dry_run=True)
    assert (dry.dry_run, dry.matched, dry.changed) == (True, 2, 0)
    assert {j.state for j in ops.iter_jobs()} == {"QUEUED"}, "a dry run changes nothing"
    done = ops.act("hold", {"name": "task-a"}, priority=7)
    assert (done.dry_run, done.matched, done.changed) == (False, 2, 2)
    assert [(j.id, j.state, j.priority) for j in ops.iter_jobs(state="HELD")] == [
        (ids[1], "HELD", 7),
        (ids[0], "HELD", 7),
    ]
    assert ops.release(ids[0], priority=1).state == "QUEUED"
    summary = ops.queue()
    assert summary.waiting == 2 and {r["platform"] for r in summary.by_platform} == {"first"}
    assert summary.throughput["finished"] == 0

    hand_out(queue, queue.server_token("t-c", name="grader-1"))
    (grader,) = ops.servers()
    assert grader.name.startswith("grader-1") and grader.type == "t-c"
    assert (grader.alive, grader.busy, grader.jobs_held) == (True, True, 1)
    assert grader.last_poll is not None

    reader = ApiClient(server.url, OperatorToken(api_token(queue, "reader", "read")))
    with pytest.raises(ApiError) as refused:
        reader.cancel(other)
    assert refused.value.status == 403
    assert reader.job(other).state == "QUEUED"
    with pytest.raises(ValueError, match="colour"):
        ops.act("cancel", {"colour": "red"})


@pytest.mark.queue_settings(events_max_sec=1)
def test_a_stream_resumes_from_its_last_event_id(queue):
    """The queue ends each stream after events_max_sec; resuming tells only what changed."""
    server = queue.gunicorn()
    api = ApiClient(server.url, signer(queue, queue.platform("first")))
    job_id = api.submit({"taskPath": "/t"}, tags="c")
    told = list(api.events(job_id))
    assert [e[1:] for e in told] == [("state", "QUEUED"), ("position", 0)]
    assert list(api.events(job_id, last_event_id=told[-1].id)) == [], "nothing new"
    assert [e.type for e in api.events(job_id)] == ["state", "position"], "no id: all again"
    token = queue.server_token("t-c")
    hand_out(queue, token)
    resumed = list(api.events(job_id, last_event_id=told[-1].id))
    assert [e[1:] for e in resumed] == [("state", "STARTED")]


@pytest.mark.queue_settings(events_keepalive_sec=30)
def test_a_silent_stream_ends_after_the_read_timeout(queue):
    server = queue.gunicorn()
    api = ApiClient(server.url, signer(queue, queue.platform("first")), stream_read_timeout=1)
    job_id = api.submit({"taskPath": "/t"}, tags="c")
    started = time.monotonic()
    told = []
    with pytest.raises(requests.ConnectionError):
        for event in api.events(job_id):  # then 30 s of silence: over the 1 s bound
            told.append(event.type)
    assert told == ["state", "position"]
    assert time.monotonic() - started < WAIT


@pytest.mark.queue_settings(events_keepalive_sec=0.2, events_max_sec=3)
def test_keepalives_hold_a_quiet_stream_open(queue):
    server = queue.gunicorn()
    api = ApiClient(server.url, signer(queue, queue.platform("first")), stream_read_timeout=1)
    job_id = api.submit({"taskPath": "/t"}, tags="c")
    # Three seconds with no change, each under a 1 s read timeout: the comments count.
    assert [e.type for e in api.events(job_id)] == ["state", "position"]


def cli_env(queue, server, platform, tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    key = tmp_path / "platform.pem"
    key.write_text(platform.private_pem)
    return {
        **environ_without_config(),
        "GRADERQUEUE_URL": server.url,
        "GRADERQUEUE_PLATFORM": platform.name,
        "GRADERQUEUE_KEY": str(key),
        "GRADERQUEUE_AUDIENCE": queue.settings.key_name,
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=WAIT, check=False
    )


@pytest.mark.queue_settings(events_max_sec=2)
def test_the_command_line_submits_and_watches_a_job_to_its_end(queue, tmp_path):
    server = queue.gunicorn()
    env = cli_env(queue, server, queue.platform("first"), tmp_path)
    (tmp_path / "job.json").write_text(json.dumps({"taskPath": "/t"}))
    key = uuid.uuid4().hex
    sent = cli(env, "submit", "--jobdata", f"@{tmp_path / 'job.json'}", "--tags", "c",
               "--name", "cli-job", "--idempotency-key", key)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    job_id = int(sent.stdout)
    listed = cli(env, "list", "--name", "cli-job", "--json")
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]

    watch = subprocess.Popen(
        [str(CLI), "watch", str(job_id)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().strip() == f"job {job_id}: QUEUED, position 0"
        token = queue.server_token("t-c")
        hand_out(queue, token)
        assert watch.stdout.readline().strip() == f"job {job_id}: STARTED"
        # Several of the queue's 2-second streams end meanwhile: watch resumes each time.
        assert watch.poll() is None
        finish(queue, token, job_id)
        assert watch.wait(timeout=WAIT) == 0
        assert watch.stdout.read().strip() == f"job {job_id}: FINISHED", "each change once"
    finally:
        watch.kill()
        watch.wait()

    status = cli(env, "status", str(job_id))
    assert status.returncode == 0 and status.stdout.startswith(f"job {job_id}: FINISHED")
    assert "handed_out" in status.stdout
    assert cli(env, "artifact", str(job_id), "stdout").stdout == "hello out"


def test_the_command_line_reports_refusals_and_a_cancelled_watch(queue, tmp_path):
    server = queue.gunicorn()
    env = cli_env(queue, server, queue.platform("first"), tmp_path)
    job_id = int(cli(env, "submit", "--jobdata", '{"taskPath": "/t"}', "--tags", "c").stdout)
    watch = subprocess.Popen(
        [str(CLI), "watch", str(job_id)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().startswith(f"job {job_id}: QUEUED")
        assert cli(env, "cancel", str(job_id)).stdout.strip() == f"job {job_id}: CANCELLED"
        assert watch.wait(timeout=WAIT) == 1, "CANCELLED is not FINISHED"
    finally:
        watch.kill()
        watch.wait()

    again = cli(env, "cancel", str(job_id))
    assert again.returncode == 2 and again.stdout == ""
    assert "(HTTP 409)" in again.stderr
    unknown = cli(env, "status", "99999")
    assert unknown.returncode == 2 and "No job #99999" in unknown.stderr
    dry = cli(env, "act", "requeue", "--filter", "state=CANCELLED", "--dry-run")
    assert dry.returncode == 0 and "1 job(s) would change" in dry.stdout
    assert json.loads(cli(env, "status", str(job_id), "--json").stdout)["state"] == "CANCELLED"


def test_watch_resumes_when_the_queues_worker_dies_mid_stream(queue, tmp_path):
    server = queue.gunicorn(workers=1)
    env = cli_env(queue, server, queue.platform("first"), tmp_path)
    job_id = int(cli(env, "submit", "--jobdata", '{"taskPath": "/t"}', "--tags", "c").stdout)
    watch = subprocess.Popen(
        [str(CLI), "watch", str(job_id)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().strip() == f"job {job_id}: QUEUED, position 0"
        # The worker serving the stream dies (gunicorn's master starts another).
        (worker,) = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        os.kill(int(worker), signal.SIGKILL)
        token = queue.server_token("t-c")
        hand_out(queue, token)
        assert watch.stdout.readline().strip() == f"job {job_id}: STARTED"
        finish(queue, token, job_id)
        assert watch.wait(timeout=WAIT) == 0
        assert watch.stdout.read().strip() == f"job {job_id}: FINISHED"
    finally:
        watch.kill()
        watch.wait()
