"""Results reach the platform's return URL exactly once: real HTTP, real database."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jwcrypto import jwk
from sqlalchemy import select, update

from graderqueue.config import replace
from graderqueue.delivery import outbox, post, redelivery
from graderqueue.delivery.worker import Worker
from graderqueue.errors import BadRequest, UnknownJob
from graderqueue.identity import passwords
from graderqueue.protocol import tokens
from graderqueue.protocol.keys import QueueKeys
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import (
    AdminUser,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Event,
    Job,
    Platform,
    utcnow,
)
from harness import ROOT
from harness.platform_endpoint import PlatformEndpoint
from harness.processes import free_port
from harness.queue import PlatformIdentity, QueueSetup

FAST_RETRIES = {"delivery_backoff_base_sec": 0.05, "delivery_backoff_max_sec": 1}


@dataclass
class Lane:
    """A platform with a return URL served by a real endpoint, and a grading server."""

    queue: QueueSetup
    platform: PlatformIdentity
    endpoint: PlatformEndpoint
    server_token: str

    def finish_job(self, name: str, jobdata: Any = None, client: Any = None) -> int:
        """Queue a job, have the grading server take it and report its result."""
        client = client or self.queue.client_for(self.platform)
        jobid = client.sendjob({"taskPath": f"/tasks/{name}"}, jobname=name, tags="c")
        polled = self.queue.post("/poll.php", server_token=self.server_token, nbtasks="0")
        assert polled["jobid"] == jobid, polled
        result = {"errorcode": 0, "errormsg": "ok", "jobdata": jobdata or {"graded": name}}
        saved = self.queue.post(
            "/sendresults.php",
            server_token=self.server_token,
            jobid=str(jobid),
            resultdata=json.dumps(result),
        )
        assert saved == {"errorcode": 0, "errormsg": "Saved resultdata."}, saved
        return jobid

    def finish_jobs(self, names: list[str]) -> list[int]:
        """finish_job for each name, with one platform client."""
        client = self.queue.client_for(self.platform)
        return [self.finish_job(name, client=client) for name in names]

    def worker(self, **changes: Any) -> Worker:
        settings = replace(self.queue.settings, **changes)
        return Worker(self.queue.db, settings, queue_keys(self.queue))


def queue_keys(queue: QueueSetup) -> QueueKeys:
    return QueueKeys(queue.settings.resolved_key_dir, queue.settings.key_name)


def make_lane(queue: QueueSetup, name: str = "plat-ret", **endpoint_options: Any) -> Lane:
    port = free_port()
    platform = queue.platform(name, return_url=f"http://127.0.0.1:{port}/results")
    endpoint = PlatformEndpoint(
        platform.private_pem, queue_keys(queue).active.public_pem, port=port, **endpoint_options
    )
    return Lane(queue, platform, endpoint, queue.server_token("t-c"))


def wait_until(condition, timeout: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Wait for a state (a bound against hangs, never an assertion on time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def delivery_of(queue: QueueSetup, job_id: int) -> Delivery:
    with queue.db.reading() as session:
        row = session.scalars(select(Delivery).where(Delivery.job_id == job_id)).one()
        session.expunge(row)
        return row


def attempts_of(queue: QueueSetup, job_id: int) -> list[DeliveryAttempt]:
    with queue.db.reading() as session:
        rows = list(
            session.scalars(
                select(DeliveryAttempt)
                .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
                .where(Delivery.job_id == job_id)
                .order_by(DeliveryAttempt.id)
            )
        )
        session.expunge_all()
        return rows


# -- the token and the retries --------------------------------------------------------------


@pytest.mark.queue_settings(**FAST_RETRIES)
def test_result_arrives_exactly_once_after_failures(queue):
    lane = make_lane(queue, fail_times=3)
    with lane.endpoint:
        jobdata = {"executions": [{"testsReports": []}], "score": 100}
        jobid = lane.finish_job("sum-of-two", jobdata)
        (payload,) = lane.endpoint.wait_accepted(1)
        row = wait_until(
            lambda: (r := delivery_of(queue, jobid)).state == DeliveryState.DELIVERED and r,
            what="the delivery recorded as delivered",
        )

    assert payload["sTaskName"] == "sum-of-two"
    assert payload["sResultData"] == jobdata
    assert re.fullmatch(r"\d{2}-\d{2}-\d{4}", payload["date"])
    assert payload["_kid"] == lane.platform.name  # JWE kid: the platform's name
    assert row.attempts == 4
    assert row.last_error == ""
    assert row.delivered_at is not None
    assert row.locked_by is None
    tries = attempts_of(queue, jobid)
    assert [(a.ok, a.http_status) for a in tries] == [(False, 500)] * 3 + [(True, 200)]
    assert "HTTP 500" in tries[0].error

    # The signature inside is the queue's, kid = the queue's key name.
    token = lane.endpoint.arrivals[-1].token
    private = jwk.JWK.from_pem(lane.platform.private_pem.encode())
    inner = tokens.decrypt(token, private, tokens.DEFAULT_MAX_BYTES)
    assert tokens.compact_header(inner, 3) == {"alg": "RS512", "kid": queue.settings.key_name}
    outer = tokens.compact_header(token, 5)
    assert (outer["alg"], outer["enc"], outer["zip"]) == ("RSA-OAEP-256", "A256CBC-HS512", "DEF")

    # Delivered is final: another pass posts nothing.
    with lane.endpoint:
        assert lane.worker().run_pass() == Counter()
    assert len(lane.endpoint.arrivals) == 4
    assert len(lane.endpoint.accepted) == 1


@pytest.mark.queue_settings(delivery_enabled=False)
def test_refusal_is_retried_then_given_up_after_the_horizon(queue):
    lane = make_lane(queue, fail_times=1000, fail_mode="refuse")
    jobid = lane.finish_job("never-taken")
    worker = lane.worker(delivery_give_up_after_sec=3600)
    with lane.endpoint:
        assert worker.run_pass() == Counter({DeliveryState.PENDING: 1})
        row = delivery_of(queue, jobid)
        assert row.state == DeliveryState.PENDING
        assert row.next_attempt_at > row.last_attempt_at  # waits out a backoff
        assert "try again later" in row.last_error

        # The horizon has passed since the result was stored: one more try, then give up.
        with queue.db.transaction() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.job_id == jobid)
                .values(created_at=utcnow() - timedelta(hours=2), next_attempt_at=utcnow())
            )
        assert worker.run_pass() == Counter({DeliveryState.GIVEN_UP: 1})
        with queue.db.transaction() as session:
            session.execute(update(Delivery).values(next_attempt_at=utcnow()))
        assert worker.run_pass() == Counter()
    assert len(lane.endpoint.arrivals) == 2
    assert delivery_of(queue, jobid).attempts == 2
    kinds = [
        e.kind
        for e in queue.rows(select(Event.kind).where(Event.job_id == jobid).order_by(Event.id))
    ]
    assert kinds == [events.DELIVERY_FAILED, events.DELIVERY_GIVEN_UP]


@pytest.mark.queue_settings(delivery_enabled=False)
def test_platform_down_then_back(queue):
    lane = make_lane(queue)
    ids = [lane.finish_job(f"job-{i}") for i in range(3)]
    worker = lane.worker(delivery_backoff_base_sec=3600, delivery_backoff_max_sec=3600)
    counts = worker.run_pass()  # the endpoint is not started: connection refused
    assert counts == Counter({DeliveryState.PENDING: 3})
    assert all("ConnectionError" in delivery_of(queue, i).last_error for i in ids)

    # Back up. The first success brings the platform's other rows forward,
    # instead of leaving them to their hour-long backoff.
    with queue.db.transaction() as session:
        session.execute(
            update(Delivery).where(Delivery.job_id == ids[0]).values(next_attempt_at=utcnow())
        )
    with lane.endpoint:
        assert worker.run_pass()[DeliveryState.DELIVERED] == 1
        assert worker.run_pass()[DeliveryState.DELIVERED] == 2
    assert lane.endpoint.accepted_names() == ["job-0", "job-1", "job-2"]


# -- several workers --------------------------------------------------------------------------


@pytest.mark.queue_settings(delivery_enabled=False)
def test_two_worker_processes_never_deliver_twice(queue):
    lane = make_lane(queue, delay=0.005)
    names = [f"job-{i:02d}" for i in range(40)]
    lane.finish_jobs(names)
    command = [sys.executable, "-m", "graderqueue", "deliver", "--once"]
    env = {**_environ(), **{k: v for k, v in queue.env.items() if v is not None}}
    env["PYTHONPATH"] = str(ROOT)
    with lane.endpoint:
        procs = [
            subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert lane.endpoint.accepted_names() == names
    assert len(lane.endpoint.arrivals) == 40
    tried = [int(re.search(r"deliveries tried: (\d+)", out).group(1)) for out in outputs]
    assert sum(tried) == 40
    states = queue.rows(select(Delivery.state, Delivery.attempts))
    assert Counter(states) == Counter({(DeliveryState.DELIVERED, 1): 40})


@pytest.mark.queue_settings(delivery_enabled=False)
def test_two_worker_threads_never_deliver_twice(queue):
    lane = make_lane(queue, delay=0.005)
    names = [f"job-{i:02d}" for i in range(30)]
    lane.finish_jobs(names)
    workers = [lane.worker(), lane.worker()]
    totals: list[Counter[str]] = []
    with lane.endpoint:
        threads = [
            threading.Thread(target=lambda w=w: totals.append(w.run_pass())) for w in workers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert lane.endpoint.accepted_names() == names
    assert sum(t[DeliveryState.DELIVERED] for t in totals) == 30


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GRADERQUEUE_")}


@pytest.mark.queue_settings(delivery_enabled=False)
def test_a_claim_lost_to_a_redelivery_is_not_overwritten(queue):
    lane = make_lane(queue)
    jobid = lane.finish_job("raced")
    dialect = queue.db.dialect
    with queue.db.transaction() as session:
        (due,) = outbox.claim(session, dialect, "worker-a/1", lease_sec=60, limit=10)
    assert delivery_of(queue, jobid).locked_by == "worker-a/1"
    # Nobody else may take it while the lease runs.
    with queue.db.transaction() as session:
        assert outbox.claim(session, dialect, "worker-b/1", lease_sec=60, limit=10) == []

    with queue.db.transaction() as session:
        redelivery.redeliver_job(session, jobid)
    ok = post.Outcome(ok=True, http_status=200)
    with queue.db.transaction() as session:
        (recorded,) = outbox.record(
            session, [outbox.Finished(due, "worker-a/1", ok)], queue.settings
        )
    assert recorded.state is None
    row = delivery_of(queue, jobid)
    assert (row.state, row.attempts, row.locked_by) == (DeliveryState.PENDING, 0, None)
    # The post happened, so it is in the attempts, but the row is due again.
    assert [a.ok for a in attempts_of(queue, jobid)] == [True]


# -- concurrent posts, batched records --------------------------------------------------------


class CountingDatabase(Database):
    """A database that notes each transaction it opens: "w" (write) or "r" (read only)."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.opened: list[str] = []

    def transaction(self):  # type: ignore[no-untyped-def]
        self.opened.append("w")
        return super().transaction()

    def reading(self):  # type: ignore[no-untyped-def]
        self.opened.append("r")
        return super().reading()


def failed_events(queue: QueueSetup) -> list[int]:
    return [
        job_id
        for (job_id,) in queue.rows(
            select(Event.job_id).where(Event.kind == events.DELIVERY_FAILED)
        )
    ]


@pytest.mark.queue_settings(delivery_enabled=False)
def test_a_slow_platform_gets_several_posts_at_once_up_to_the_setting(queue):
    lane = make_lane(queue, delay=0.3)
    names = [f"job-{i}" for i in range(9)]
    lane.finish_jobs(names)
    with lane.endpoint:
        counts = lane.worker(delivery_concurrency=3).run_pass()
    assert counts == Counter({DeliveryState.DELIVERED: 9})
    # Posts overlapped at the platform, never more than the setting allows.
    assert 1 < lane.endpoint.max_in_progress <= 3
    assert lane.endpoint.accepted_names() == names
    states = queue.rows(select(Delivery.state, Delivery.attempts, Delivery.locked_by))
    assert Counter(states) == Counter({(DeliveryState.DELIVERED, 1, None): 9})
    assert failed_events(queue) == []  # a first-try success is no failure


@pytest.mark.queue_settings(delivery_timeout_sec=30)  # longer than the hold below
def test_the_app_thread_posts_results_concurrently(queue):
    # The first post is held until a second one has begun: one post at a
    # time would leave it waiting (and max_in_progress at 1). Begun, not
    # under way now: under load the second may be over before the first
    # reaches this hold, and it still overlapped the first.
    lane = make_lane(queue)
    first = threading.Event()

    def hold_the_first(_payload: dict[str, Any] | None) -> None:
        if not first.is_set():
            first.set()
            lane.endpoint.wait_entered(2, timeout=20)

    lane.endpoint.on_arrival = hold_the_first
    names = [f"job-{i}" for i in range(4)]
    with lane.endpoint:
        ids = [lane.finish_job(name) for name in names]
        lane.endpoint.wait_accepted(4)
        wait_until(
            lambda: all(delivery_of(queue, i).state == DeliveryState.DELIVERED for i in ids),
            what="every delivery recorded",
        )
    assert lane.endpoint.max_in_progress >= 2
    assert lane.endpoint.accepted_names() == names
    assert [delivery_of(queue, i).attempts for i in ids] == [1] * 4


@pytest.mark.queue_settings(delivery_enabled=False)
def test_a_batch_is_recorded_in_one_transaction(queue):
    lane = make_lane(queue, fail_times=1)
    ids = [lane.finish_job(f"job-{i}") for i in range(5)]
    db = CountingDatabase(queue.settings)
    try:
        worker = Worker(db, queue.settings, queue_keys(queue))
        with lane.endpoint:
            counts = worker.run_pass()
        worker.close()
    finally:
        db.dispose()
    assert counts == Counter({DeliveryState.DELIVERED: 4, DeliveryState.PENDING: 1})
    # The look, one claim for the five rows, one record of their outcomes.
    assert db.opened == ["r", "w", "w"]
    rows = [delivery_of(queue, i) for i in ids]
    (failed,) = [r for r in rows if r.state == DeliveryState.PENDING]
    assert failed.attempts == 1 and "HTTP 500" in failed.last_error
    assert all(r.locked_by is None for r in rows)
    assert sum(len(attempts_of(queue, i)) for i in ids) == 5
    assert failed_events(queue) == [failed.job_id]


@pytest.mark.queue_settings(delivery_enabled=False)
def test_a_claim_stolen_during_a_batch_is_not_overwritten_the_others_are_recorded(queue):
    def steal(payload: dict[str, Any] | None) -> None:
        # An operator asks for a redelivery while the queue's post is under way.
        if payload is not None and payload["sTaskName"] == "stolen":
            with queue.db.transaction() as session:
                redelivery.redeliver_job(session, ids["stolen"])

    lane = make_lane(queue, delay=0.2, on_arrival=steal)
    ids = {name: lane.finish_job(name) for name in ("a", "stolen", "c", "d")}
    worker = lane.worker()
    with lane.endpoint:
        assert worker.run_pass() == Counter({DeliveryState.DELIVERED: 3, "lost": 1})
        stolen = delivery_of(queue, ids["stolen"])
        assert (stolen.state, stolen.attempts, stolen.locked_by) == (
            DeliveryState.PENDING,
            0,
            None,
        )
        assert [a.ok for a in attempts_of(queue, ids["stolen"])] == [True]
        for name in ("a", "c", "d"):
            row = delivery_of(queue, ids[name])
            assert (row.state, row.attempts, row.locked_by) == (DeliveryState.DELIVERED, 1, None)
        # The redelivery that was asked for still happens.
        lane.endpoint.on_arrival = None
        assert worker.run_pass() == Counter({DeliveryState.DELIVERED: 1})
    assert Counter(lane.endpoint.accepted_names()) == Counter({"a": 1, "stolen": 2, "c": 1, "d": 1})


@pytest.mark.queue_settings(delivery_enabled=False)
def test_a_retry_that_succeeds_brings_forward_the_rows_waiting_not_those_just_tried(queue):
    lane = make_lane(queue)
    ids = [lane.finish_job(f"job-{i}") for i in range(3)]
    worker = lane.worker(delivery_backoff_base_sec=3600, delivery_backoff_max_sec=3600)
    assert worker.run_pass() == Counter({DeliveryState.PENDING: 3})  # the platform is down
    with queue.db.transaction() as session:
        session.execute(
            update(Delivery).where(Delivery.job_id.in_(ids[:2])).values(next_attempt_at=utcnow())
        )
    # Back up; of the two retries in one batch, one fails and one succeeds.
    lane.endpoint.fail_times = 1
    with lane.endpoint:
        before = utcnow()
        assert worker.run_pass() == Counter({DeliveryState.DELIVERED: 1, DeliveryState.PENDING: 1})
    (failed,) = [r for i in ids[:2] if (r := delivery_of(queue, i)).state == "pending"]
    assert failed.next_attempt_at > before + timedelta(seconds=1000)  # its own backoff
    assert delivery_of(queue, ids[2]).next_attempt_at <= utcnow()  # brought forward


@pytest.mark.queue_settings(delivery_enabled=False)
def test_a_warm_stop_records_the_posts_under_way_and_gives_back_the_rest(queue):
    lane = make_lane(queue, delay=0.5)
    ids = [lane.finish_job(f"job-{i:02d}") for i in range(12)]
    worker = lane.worker(delivery_concurrency=4)
    thread = threading.Thread(target=worker.run_forever)
    with lane.endpoint:
        thread.start()
        lane.endpoint.wait_in_progress(1)
        worker.stop()
        thread.join(30)
        assert not thread.is_alive()
        rows = [delivery_of(queue, i) for i in ids]
        assert all(r.locked_by is None for r in rows)
        delivered = {r.job_id for r in rows if r.state == DeliveryState.DELIVERED}
        assert 1 <= len(delivered) <= 4
        assert len(lane.endpoint.accepted) == len(delivered)
        assert all(r.attempts == 0 for r in rows if r.job_id not in delivered)
        # Another worker takes the rest at once, each exactly once.
        assert lane.worker().run_pass() == Counter({DeliveryState.DELIVERED: 12 - len(delivered)})
    assert lane.endpoint.accepted_names() == [f"job-{i:02d}" for i in range(12)]


@pytest.mark.queue_settings(delivery_enabled=False, delivery_poll_sec=0.01)
def test_an_idle_worker_only_reads_and_a_kicked_one_claims_without_looking_first(queue):
    lane = make_lane(queue)
    db = CountingDatabase(queue.settings)
    worker = Worker(db, queue.settings, queue_keys(queue))
    try:
        for _ in range(3):
            worker.step()
        assert db.opened and set(db.opened) == {"r"}  # never SQLite's write lock

        jobid = lane.finish_job("kicked")
        db.opened.clear()
        worker.kick()
        with lane.endpoint:
            worker.step()
            assert db.opened[0] == "w"  # the claim, with no read before it
            wait_until(lambda: (worker.step(), lane.endpoint.accepted)[1], what="the post")
            wait_until(lambda: (worker.step(), db.opened.count("w") == 2)[1], what="the record")
    finally:
        worker.stop()
        worker.close()
        db.dispose()
    assert delivery_of(queue, jobid).state == DeliveryState.DELIVERED


# -- redelivery on demand ----------------------------------------------------------------------


@pytest.mark.queue_settings(delivery_enabled=False)
def test_redeliver_by_id_and_by_filter(queue):
    lane = make_lane(queue)
    ids = [lane.finish_job(f"job-{i}") for i in range(4)]
    with lane.endpoint:
        assert lane.worker().run_pass()[DeliveryState.DELIVERED] == 4

    with queue.db.transaction() as session:
        redelivery.redeliver_job(session, ids[1])
    with lane.endpoint:
        assert lane.worker().run_pass() == Counter({DeliveryState.DELIVERED: 1})
    assert Counter(lane.endpoint.accepted_names())["job-1"] == 2

    # Jobs done on three days; one of them has no outbox row (done before
    # the platform had a return URL): a filter covers the last two days.
    now = utcnow()
    with queue.db.transaction() as session:
        for job_id, days in zip(ids[:3], (3, 2, 1), strict=True):
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(grading_end_time=now - timedelta(days=days))
            )
        session.execute(
            update(Job).where(Job.id == ids[3]).values(grading_end_time=now - timedelta(days=5))
        )
        session.query(Delivery).filter(Delivery.job_id == ids[2]).delete()
        platform = session.get(Platform, lane.platform.id)
        count = redelivery.redeliver_matching(
            session, platform, since=now - timedelta(days=2, hours=12), until=now
        )
    assert count == 2
    assert delivery_of(queue, ids[2]).state == DeliveryState.PENDING
    with lane.endpoint:
        assert lane.worker().run_pass() == Counter({DeliveryState.DELIVERED: 2})
    assert Counter(lane.endpoint.accepted_names()) == Counter(
        {"job-0": 1, "job-1": 3, "job-2": 2, "job-3": 1}
    )

    with queue.db.transaction() as session, pytest.raises(UnknownJob):
        redelivery.redeliver_job(session, 999999)
    queued = queue.client_for(lane.platform).sendjob({"taskPath": "/t"}, tags="c")
    with queue.db.transaction() as session, pytest.raises(BadRequest, match="not done"):
        redelivery.redeliver_job(session, queued)


def test_backoff_doubles_up_to_the_cap_with_jitter(queue):
    settings = replace(queue.settings, delivery_backoff_base_sec=10, delivery_backoff_max_sec=300)
    low = [outbox.backoff_sec(n, settings, rand=0.0) for n in range(1, 8)]
    high = [outbox.backoff_sec(n, settings, rand=1.0) for n in range(1, 8)]
    assert high == [10, 20, 40, 80, 160, 300, 300]
    assert low == [h / 2 for h in high]


def test_a_database_outage_is_logged_when_it_starts_not_every_pass(sqlite_queue, tmp_path, caplog):
    # A database without the schema fails every pass, like one that is down.
    settings = replace(
        sqlite_queue.settings,
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        delivery_poll_sec=0.01,
    )
    db = Database(settings)
    worker = Worker(db, settings, queue_keys(sqlite_queue))
    try:
        with caplog.at_level("INFO", logger="graderqueue.delivery"):
            for _ in range(3):
                worker.step()
    finally:
        db.dispose()
    failures = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(failures) == 1
    assert "no such table" in failures[0].exc_text


# -- what the queue follows and keeps of a platform's answer ------------------------------------


class Receiver:
    """A return URL that answers every post with the same status, headers and body."""

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}
        self.posts = 0
        self.port = free_port()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts += 1
                self.send_response(receiver.status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                # The queue may stop reading: it reads a bounded part only.
                with contextlib.suppress(OSError):
                    self.wfile.write(receiver.body)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/results"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def set_return_url(queue: QueueSetup, platform_id: int, url: str) -> None:
    with queue.db.transaction() as session:
        session.execute(update(Platform).where(Platform.id == platform_id).values(return_url=url))


def due_now(queue: QueueSetup) -> None:
    with queue.db.transaction() as session:
        session.execute(update(Delivery).values(next_attempt_at=utcnow()))


@pytest.mark.parametrize("status", [307, 302])
@pytest.mark.queue_settings(delivery_enabled=False)
def test_a_redirect_is_a_failed_attempt_and_the_token_goes_nowhere_else(queue, status):
    lane = make_lane(queue)  # its endpoint plays the internal address redirected to
    redirector = Receiver(status, b"", {"Location": lane.endpoint.url + "?" + "x" * 500})
    set_return_url(queue, lane.platform.id, redirector.url)
    jobid = lane.finish_job("redirected")
    worker = lane.worker()
    with redirector, lane.endpoint:
        assert worker.run_pass() == Counter({DeliveryState.PENDING: 1})
        assert redirector.posts == 1
        assert lane.endpoint.arrivals == []  # nothing re-posted, nor fetched
        row = delivery_of(queue, jobid)
        assert row.state == DeliveryState.PENDING and row.attempts == 1
        assert row.next_attempt_at > row.last_attempt_at  # the usual backoff
        assert f"HTTP {status}: redirect to {lane.endpoint.url}?xxx" in row.last_error
        assert "refused" in row.last_error
        assert len(row.last_error) <= post.ERROR_MAX  # the long Location is cut
        assert [(a.ok, a.http_status) for a in attempts_of(queue, jobid)] == [(False, status)]

        # The platform fixes its return URL: the next try delivers, once.
        set_return_url(queue, lane.platform.id, lane.endpoint.url)
        due_now(queue)
        assert worker.run_pass() == Counter({DeliveryState.DELIVERED: 1})
        due_now(queue)
        assert worker.run_pass() == Counter()
    assert lane.endpoint.accepted_names() == ["redirected"]
    assert redirector.posts == 1


MIB = 1024 * 1024
NASTY = "<script>alert('x')</script>\x1b[31m\x00\u202eevil\r\nSecret-Token: abc\t"


@pytest.mark.parametrize(
    "body",
    [
        # A megabyte of HTML with control characters.
        (NASTY * 4).encode() + b"A" * MIB,
        # A refusal whose sError is long and full of control characters.
        json.dumps({"bSuccess": False, "sError": NASTY * 4 + "B" * 40000}).encode(),
    ],
    ids=["html-page", "json-serror"],
)
@pytest.mark.queue_settings(delivery_enabled=False)
def test_only_a_short_printable_excerpt_of_the_answer_is_stored_and_shown_escaped(queue, body):
    lane = make_lane(queue)
    receiver = Receiver(500, body, {"Content-Type": "text/html"})
    set_return_url(queue, lane.platform.id, receiver.url)
    jobid = lane.finish_job("answered-junk")
    with receiver:
        assert lane.worker().run_pass() == Counter({DeliveryState.PENDING: 1})
    row = delivery_of(queue, jobid)
    (attempt,) = attempts_of(queue, jobid)
    for stored in (row.last_error, attempt.error):
        assert stored.startswith("HTTP 500: ")
        # The queue's words, then at most 200 characters of the platform's.
        assert len(stored.split(": ", 2)[2]) <= 200
        assert len(stored) <= 300
        assert stored.isprintable(), stored  # no control, format or line-break characters
        assert "<script>alert('x')</script>" in stored  # printable text is kept...
    if len(body) > post.ANSWER_READ_MAX:
        # Not read whole: a megabyte answer is refused for its size.
        assert f"larger than {post.ANSWER_READ_MAX} bytes" in row.last_error
    # ... and the admin page shows it escaped.
    with queue.db.transaction() as session:
        session.add(AdminUser(username="alice", password_hash=passwords.hash_password("pw-pw-pw")))
    client = queue.app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"username": "alice", "password": "pw-pw-pw", "csrf_token": csrf}
    assert client.post("/admin/login", data=form).status_code == 302
    html = client.get(f"/admin/jobs/{jobid}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<script>alert(" not in html
    assert "\x1b" not in html and "\x00" not in html


def test_excerpt_keeps_printable_text_and_bounds_the_length():
    assert post.excerpt("  short\r\n answer ") == "short answer"
    assert post.excerpt("a\x1bb\u202ec\x00") == "a\ufffdb\ufffdc\ufffd"
    cut = post.excerpt("x" * 10_000, 50)
    assert len(cut) == 50 and cut.endswith("...")
    assert len(post.excerpt(" " * 10_000 + "y" * 10_000)) <= post.EXCERPT_CHARS
    # An old row's long error, shown on the admin page through the same excerpt.
    assert len(post.Outcome(False, "\x07" * 5000).error) <= post.ERROR_MAX
