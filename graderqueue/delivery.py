"""Results to the platforms' return URLs: the outbox worker.

``jobs.complete()`` writes a ``Delivery`` row in the transaction that makes
a job done, so a result is never done without a delivery being owed. This
module works the outbox off: it claims due rows for a short lease, posts the
result token (PROTOCOL.md "Result delivery") outside any transaction, and
records the outcome. A row is retried with capped exponential backoff until
the platform answers ``{"bSuccess": true}``, or given up after
``delivery_give_up_after_sec``.

Several workers (threads of every web worker process, ``graderqueue
deliver`` on any node) may run at once: a row is claimed by one of them in
the database (``SKIP LOCKED`` on MariaDB, the write lock on SQLite), and the
final update only counts if that worker still holds the claim, so a row that
is delivered is never posted again. The one case the queue cannot rule out is
a process killed between the platform's answer and the record of it; the
result is then sent once more when the lease runs out.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import random
import secrets
import socket
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import and_, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from . import events, tokens
from .config import Settings
from .db import Database
from .errors import BadRequest, UnknownJob
from .keys import QueueKey, QueueKeys, parse_public_key
from .models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Job,
    JobStatus,
    Platform,
    PlatformKey,
    Result,
    Timestamp,
    utcnow,
)

log = logging.getLogger(__name__)

# Rows one worker claims at a time: small, so that a killed worker's rows
# wait for at most one short lease before another worker takes them.
BATCH = 10
# Lease slack on top of the time the batch's posts may take.
LEASE_SLACK_SEC = 30.0
ERROR_MAX = 1000
# Floor of an idle worker's wait when due rows exist that it could not claim
# (another worker holds them right now): never spin on the database.
BUSY_WAIT_SEC = 0.1
FAILURE_LOG_SEC = 60.0


@dataclass(frozen=True)
class Due:
    """A claimed delivery with everything needed to post it."""

    id: int
    job_id: int
    platform_id: int
    attempts: int
    created_at: datetime
    url: str
    platform_name: str
    platform_key_pem: str | None
    job_name: str
    resultdata: str


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str = ""
    http_status: int | None = None
    duration_ms: int = 0


# -- the token and the post ---------------------------------------------------


def result_payload(job_name: str, resultdata: str, day: date) -> dict[str, Any]:
    """What the platform gets: the job's name and the grader's ``jobdata``."""
    try:
        result = json.loads(resultdata)
    except ValueError:
        result = {}
    jobdata = result.get("jobdata") if isinstance(result, dict) else None
    return {"sTaskName": job_name, "sResultData": jobdata, "date": day.strftime("%d-%m-%Y")}


def result_token(
    payload: dict[str, Any], queue_key: QueueKey, platform_name: str, platform_key_pem: str
) -> str:
    """Signed by the queue (kid = queue key name), encrypted to the platform (kid = its name)."""
    return tokens.seal(
        payload,
        queue_key.private,
        queue_key.name,
        parse_public_key(platform_key_pem),
        platform_name,
    )


def post_result(http: requests.Session, url: str, token: str, timeout: float) -> Outcome:
    """POST ``sToken``; success only when the answer is JSON with ``bSuccess`` true.

    The HTTP status is not looked at for success: a platform that says
    ``bSuccess`` true has stored the result, and sending it again would
    grade it twice.
    """
    started = time.monotonic()

    def outcome(ok: bool, error: str = "", status: int | None = None) -> Outcome:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(ok, error[:ERROR_MAX], status, elapsed)

    try:
        response = http.post(url, data={"sToken": token}, timeout=(timeout, timeout))
    except requests.RequestException as exc:
        return outcome(False, f"{type(exc).__name__}: {exc}")
    status = response.status_code
    try:
        answer = response.json()
    except ValueError:
        return outcome(
            False, f"HTTP {status}: the answer is not JSON: {response.text[:200]!r}", status
        )
    if isinstance(answer, dict) and answer.get("bSuccess") is True:
        return outcome(True, "", status)
    reason = answer.get("sError") if isinstance(answer, dict) else None
    return outcome(False, f"HTTP {status}: platform refused: {reason or answer!r}", status)


def backoff_sec(attempts: int, settings: Settings, rand: float | None = None) -> float:
    """Delay before the next try after ``attempts`` failures.

    Doubles from ``delivery_backoff_base_sec`` up to ``delivery_backoff_max_sec``,
    with "equal jitter" (half fixed, half random), so that rows which failed
    together (a platform outage) do not all come back in the same second.
    """
    base = max(settings.delivery_backoff_base_sec, 0.001)
    ceiling = max(float(settings.delivery_backoff_max_sec), base)
    delay = min(ceiling, base * 2 ** min(max(attempts, 1) - 1, 40))
    return delay / 2 + (random.random() if rand is None else rand) * delay / 2


# -- the outbox in the database -----------------------------------------------


def _due(now: datetime, due_before: datetime) -> Any:
    return and_(
        Delivery.state == DeliveryState.PENDING,
        Delivery.next_attempt_at <= due_before,
        or_(Delivery.locked_until.is_(None), Delivery.locked_until < now),
    )


def claim_due(
    db: Database,
    holder: str,
    *,
    lease_sec: float,
    limit: int = BATCH,
    due_before: datetime | None = None,
) -> list[Due]:
    """Claim up to ``limit`` due rows for ``holder`` (unique per claim) until the lease ends."""
    now = utcnow()
    due = _due(now, due_before or now)
    # Most looks find nothing: ask a reader first, so an idle worker never
    # takes SQLite's write lock.
    with db.reading() as session:
        if session.scalar(select(Delivery.id).where(due).limit(1)) is None:
            return []
    with db.transaction() as session:
        query = select(Delivery.id).where(due).order_by(Delivery.next_attempt_at, Delivery.id)
        query = query.limit(limit)
        if db.dialect != "sqlite":
            # Two workers scanning at once take disjoint rows instead of waiting.
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        if not ids:
            return []
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), due)
            .values(locked_by=holder, locked_until=now + timedelta(seconds=lease_sec))
            .execution_options(synchronize_session=False)
        )
        rows = session.execute(
            select(
                Delivery.id,
                Delivery.job_id,
                Delivery.platform_id,
                Delivery.attempts,
                Delivery.created_at,
                Platform.return_url,
                Platform.name,
                Job.name,
                Result.resultdata,
            )
            .join(Job, Job.id == Delivery.job_id)
            .join(Platform, Platform.id == Delivery.platform_id)
            .outerjoin(Result, Result.job_id == Delivery.job_id)
            .where(Delivery.id.in_(ids), Delivery.locked_by == holder)
            .order_by(Delivery.next_attempt_at, Delivery.id)
        ).all()
        keys = _newest_keys(session, {row[2] for row in rows})
    return [
        Due(
            id=row[0],
            job_id=row[1],
            platform_id=row[2],
            attempts=row[3],
            created_at=row[4],
            url=row[5],
            platform_name=row[6],
            platform_key_pem=keys.get(row[2]),
            job_name=row[7],
            resultdata=row[8] if row[8] is not None else "{}",
        )
        for row in rows
    ]


def _newest_keys(session: Session, platform_ids: set[int]) -> dict[int, str]:
    """Each platform's newest active key: during a rotation, the one it added last."""
    found: dict[int, str] = {}
    if not platform_ids:
        return found
    for platform_id, pem in session.execute(
        select(PlatformKey.platform_id, PlatformKey.public_key)
        .where(PlatformKey.platform_id.in_(platform_ids), PlatformKey.active.is_(True))
        .order_by(PlatformKey.id.desc())
    ):
        found.setdefault(platform_id, pem)
    return found


def release(db: Database, holder: str, ids: list[int]) -> None:
    """Give back claimed rows that were not tried (the worker is stopping)."""
    if not ids:
        return
    with db.transaction() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.locked_by == holder)
            .values(locked_by=None, locked_until=None)
            .execution_options(synchronize_session=False)
        )


def record(db: Database, due: Due, holder: str, outcome: Outcome, settings: Settings) -> str | None:
    """Store one attempt and the row's next state; None if the claim was lost meanwhile.

    A claim is lost when an operator asked for a redelivery while the post
    was under way, or the lease ran out: the row then belongs to someone
    else and this outcome must not overwrite it.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "attempts": Delivery.attempts + 1,
        "last_attempt_at": now,
        "locked_by": None,
        "locked_until": None,
    }
    if outcome.ok:
        state = DeliveryState.DELIVERED
        values.update(state=state, delivered_at=now, last_error="")
    elif (now - due.created_at).total_seconds() >= settings.delivery_give_up_after_sec:
        state = DeliveryState.GIVEN_UP
        values.update(state=state, last_error=outcome.error)
    else:
        state = DeliveryState.PENDING
        delay = backoff_sec(due.attempts + 1, settings)
        values.update(next_attempt_at=now + timedelta(seconds=delay), last_error=outcome.error)
    with db.transaction() as session:
        won = session.execute(
            update(Delivery)
            .where(
                Delivery.id == due.id,
                Delivery.locked_by == holder,
                Delivery.state == DeliveryState.PENDING,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        still_there = won.rowcount == 1 or session.get(Delivery, due.id) is not None
        if still_there:  # the job may have been deleted meanwhile
            session.add(
                DeliveryAttempt(
                    delivery_id=due.id,
                    time=now,
                    ok=outcome.ok,
                    http_status=outcome.http_status,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
            )
        if won.rowcount != 1:
            return None
        if outcome.ok and due.attempts > 0:
            # The platform answers again: its rows waiting out a backoff go now
            # instead of up to delivery_backoff_max_sec later. (Only after a
            # retry succeeds: a first-try success rarely follows an outage,
            # and this spares an UPDATE per delivery.)
            session.execute(
                update(Delivery)
                .where(
                    Delivery.state == DeliveryState.PENDING,
                    Delivery.next_attempt_at > now,
                    Delivery.platform_id == due.platform_id,
                )
                .values(next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
        elif state == DeliveryState.GIVEN_UP:
            events.log_event(
                session,
                events.DELIVERY_GIVEN_UP,
                job_id=due.job_id,
                message=f"gave up after {due.attempts + 1} attempts: {outcome.error}",
            )
        elif due.attempts == 0:
            # One event when a result starts failing, not one per retry: the
            # attempts table has every try.
            events.log_event(
                session, events.DELIVERY_FAILED, job_id=due.job_id, message=outcome.error
            )
    return state


def next_due_in(db: Database, max_wait: float) -> float:
    """Seconds until an unclaimed pending row is due, at most ``max_wait``."""
    now = utcnow()
    with db.reading() as session:
        soonest = session.scalar(
            select(func.min(Delivery.next_attempt_at)).where(
                Delivery.state == DeliveryState.PENDING,
                or_(Delivery.locked_until.is_(None), Delivery.locked_until < now),
            )
        )
    if soonest is None:
        return max_wait
    return min(max_wait, max(0.0, (soonest - now).total_seconds()))


# -- the worker ---------------------------------------------------------------


class Worker:
    """Posts due deliveries; one per thread (it owns an HTTP session)."""

    def __init__(self, db: Database, settings: Settings, keys: QueueKeys) -> None:
        self.db = db
        self.settings = settings
        self.keys = keys
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.http = requests.Session()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self._claims = itertools.count(1)
        self._failing_since: float | None = None
        self._last_failure_log = 0.0
        # A post may take a connect and a read timeout; the lease covers a
        # whole batch of them, so a live worker never loses its claim.
        self.post_budget = 2 * settings.delivery_timeout_sec + 1
        self.lease_sec = BATCH * self.post_budget + LEASE_SLACK_SEC

    def kick(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        """Warm stop: finish the post under way, record it, give back the rest."""
        self.stopping.set()
        self.wake.set()

    def attempt(self, due: Due) -> Outcome:
        if not due.url:
            return Outcome(False, "the platform has no return URL any more")
        if due.platform_key_pem is None:
            return Outcome(False, "the platform has no active public key")
        payload = result_payload(due.job_name, due.resultdata, utcnow().date())
        try:
            token = result_token(payload, self.keys.active, due.platform_name, due.platform_key_pem)
        except Exception as exc:  # a bad stored key must not stop the worker
            return Outcome(False, f"cannot make the result token: {type(exc).__name__}")
        return post_result(self.http, due.url, token, self.settings.delivery_timeout_sec)

    def run_pass(self) -> Counter[str]:
        """Try every delivery due now, each once; returns counts by new state.

        Rows that fail get a next try in the future, after this pass's
        cut-off, so a pass always ends (``graderqueue deliver --once``).
        """
        cutoff = utcnow()
        counts: Counter[str] = Counter()
        while not self.stopping.is_set():
            holder = f"{self.id}/{next(self._claims)}"
            batch = claim_due(self.db, holder, lease_sec=self.lease_sec, due_before=cutoff)
            if not batch:
                break
            self._post_batch(batch, holder, counts)
        return counts

    def _post_batch(self, batch: list[Due], holder: str, counts: Counter[str]) -> None:
        deadline = time.monotonic() + self.lease_sec - LEASE_SLACK_SEC / 2
        for index, due in enumerate(batch):
            if self.stopping.is_set() or time.monotonic() + self.post_budget > deadline:
                release(self.db, holder, [d.id for d in batch[index:]])
                return
            state = record(self.db, due, holder, self.attempt(due), self.settings)
            counts[state or "lost"] += 1

    def run_forever(self, alive: Callable[[], bool] = lambda: True) -> None:
        """Deliver as rows fall due, until :meth:`stop` or ``alive()`` turns false.

        Survives database outages: a failed pass is tried again after the
        bounded wait.
        """
        while not self.stopping.is_set() and alive():
            self.step()

    def step(self) -> None:
        """One pass over what is due, then sleep until a kick or the next due row."""
        max_wait = max(self.settings.delivery_poll_sec, 0.05)
        self.wake.clear()  # a kick during the pass makes the wait below return at once
        try:
            counts = self.run_pass()
            wait = next_due_in(self.db, max_wait)
            if wait == 0 and not counts:
                wait = BUSY_WAIT_SEC
            if self._failing_since is not None:
                log.info("delivery works again")
                self._failing_since = None
        except Exception:
            self._log_failure()
            wait = max_wait
        self.wake.wait(wait)

    def _log_failure(self) -> None:
        # A database outage fails every pass of every process: say so when it
        # starts and then once a minute, not every few seconds.
        now = time.monotonic()
        if self._failing_since is None or now - self._last_failure_log >= FAILURE_LOG_SEC:
            if self._failing_since is None:
                self._failing_since = now
            self._last_failure_log = now
            log.warning("delivery pass failed; trying again shortly", exc_info=True)


class InProcessDelivery:
    """The delivery thread of one web worker process.

    Started with the app and again, if needed, by the first kick after a fork
    (a thread does not survive ``fork``), so it also works with gunicorn's
    ``preload_app``.
    """

    def __init__(self, db: Database, settings: Settings, keys: QueueKeys) -> None:
        self.db, self.settings, self.keys = db, settings, keys
        self._lock = threading.Lock()
        self._pid = 0
        self.worker: Worker | None = None
        self.thread: threading.Thread | None = None

    def ensure_running(self) -> None:
        if self._pid == os.getpid() and self.thread is not None and self.thread.is_alive():
            return
        with self._lock:
            if self._pid == os.getpid() and self.thread is not None and self.thread.is_alive():
                return
            if self._pid != os.getpid():
                atexit.register(_stop_at_exit, weakref.ref(self))
            self.worker = Worker(self.db, self.settings, self.keys)
            # The thread lives as long as its app: it holds the runner only
            # weakly, so an app that is dropped (tests build many) stops it.
            ref = weakref.ref(self)
            self.thread = threading.Thread(
                target=self.worker.run_forever,
                args=(lambda: ref() is not None,),
                name="gq-delivery",
                daemon=True,
            )
            self._pid = os.getpid()
            self.thread.start()

    def kick(self) -> None:
        self.ensure_running()
        assert self.worker is not None
        self.worker.kick()

    def stop(self, timeout: float | None = None) -> None:
        """Stop and wait for the post under way, so that its outcome is recorded."""
        worker, thread = self.worker, self.thread
        if worker is None or thread is None or self._pid != os.getpid():
            return
        worker.stop()
        thread.join(self.settings.delivery_timeout_sec * 2 + 2 if timeout is None else timeout)


def _stop_at_exit(ref: weakref.ref[InProcessDelivery]) -> None:
    # A web worker exiting (gunicorn's SIGTERM): let the post under way be recorded.
    runner = ref()
    if runner is not None:
        runner.stop()


def start_in_app(app: Any, rt: Any) -> InProcessDelivery | None:
    """Run a delivery thread in this web worker process, if delivery is enabled.

    Every process of every node runs one; they share the work through the
    database. ``rt.delivery_kick`` lets a stored result go out at once.
    """
    if not rt.settings.delivery_enabled:
        return None
    runner = InProcessDelivery(rt.db, rt.settings, rt.keys)
    app.extensions["graderqueue.delivery"] = runner
    rt.delivery_kick = runner.kick
    runner.ensure_running()
    return runner


# -- re-sending on demand -----------------------------------------------------


def _reset_values(now: datetime) -> dict[str, Any]:
    # created_at restarts the give-up horizon: a redelivery of an old result
    # must get its retries, not give up at the first failure.
    return {
        "state": DeliveryState.PENDING,
        "next_attempt_at": now,
        "created_at": now,
        "delivered_at": None,
        "locked_by": None,
        "locked_until": None,
    }


def redeliver_job(session: Session, job_id: int) -> None:
    """Send a done job's result to its platform again, even if it was delivered."""
    job = session.get(Job, job_id)
    if job is None:
        raise UnknownJob(f"No job #{job_id}.")
    if job.status != JobStatus.DONE:
        raise BadRequest(f"Job #{job_id} is {job.status}, not done: it has no result to send.")
    platform = session.get(Platform, job.platform_id) if job.platform_id is not None else None
    if platform is None or not platform.return_url:
        raise BadRequest(f"Job #{job_id} comes from no platform with a return URL.")
    now = utcnow()
    changed = session.execute(
        update(Delivery)
        .where(Delivery.job_id == job_id)
        .values(**_reset_values(now))
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount == 0:
        session.add(
            Delivery(job_id=job_id, platform_id=platform.id, next_attempt_at=now, created_at=now)
        )
    events.log_event(session, events.REDELIVERY, job_id=job_id, message="redelivery requested")


def redeliver_matching(
    session: Session,
    platform: Platform,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Send again the results of a platform's jobs done in [since, until); returns how many."""
    if not platform.return_url:
        raise BadRequest(f"Platform {platform.name!r} has no return URL.")
    now = utcnow()
    conditions = [Job.platform_id == platform.id, Job.status == JobStatus.DONE]
    if since is not None:
        conditions.append(Job.grading_end_time >= since)
    if until is not None:
        conditions.append(Job.grading_end_time < until)
    matching = select(Job.id).where(*conditions)
    reset = session.execute(
        update(Delivery)
        .where(Delivery.job_id.in_(matching))
        .values(**_reset_values(now))
        .execution_options(synchronize_session=False)
    ).rowcount
    # Jobs done before the platform had a return URL, or before this version
    # of the queue, have no outbox row yet: make one.
    stamp = literal(now, Timestamp)
    created = session.execute(
        insert(Delivery).from_select(
            [
                "job_id",
                "platform_id",
                "state",
                "attempts",
                "next_attempt_at",
                "created_at",
                "last_error",
            ],
            select(
                Job.id,
                Job.platform_id,
                literal(DeliveryState.PENDING.value),
                literal(0),
                stamp,
                stamp,
                literal(""),
            ).where(*conditions, ~exists().where(Delivery.job_id == Job.id)),
        )
    ).rowcount
    total = reset + created
    events.log_event(
        session,
        events.REDELIVERY,
        message=f"redelivery of {total} results of platform {platform.name} requested "
        f"(done from {since or 'the start'} until {until or 'now'})",
    )
    return total
