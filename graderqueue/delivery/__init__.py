"""Results to the platforms' return URLs: the outbox worker.

``jobs.complete()`` writes a ``Delivery`` row in the transaction that makes
a job done, so a result is never done without a delivery being owed. This
module works the outbox off: it claims due rows for a short lease, posts the
result tokens (PROTOCOL.md "Result delivery") outside any transaction, up to
``delivery_concurrency`` at once, and records the outcomes, several per
transaction. A row is retried with capped exponential backoff until the
platform answers ``{"bSuccess": true}``, or given up after
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
import re
import secrets
import socket
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

import requests
from sqlalchemy import and_, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.errors import BadRequest, UnknownJob
from graderqueue.protocol import tokens
from graderqueue.protocol.keys import QueueKey, QueueKeys, parse_public_key
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import (
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

# claim_due's default size. A Worker claims only as many rows as it has free
# post slots (delivery_concurrency), so that each claimed row is posted at
# once and its lease can stay short.
BATCH = 10
# Lease slack on top of the time the posts and their record may take.
LEASE_SLACK_SEC = 30.0
# While posts are under way, a worker records and claims at most this often:
# results stored and posts ended in the meantime share one transaction. An
# idle worker acts on a kick at once.
GATHER_SEC = 0.05
# What is kept of a failed post: a platform's answer may be megabytes of
# HTML, control characters, or (behind a redirect) an internal service's
# secrets. Every stored error is cut to ERROR_MAX printable characters, and
# what the platform said takes at most EXCERPT_CHARS of them.
ERROR_MAX = 300
EXCERPT_CHARS = 200
# The most of an answer that is read: {"bSuccess": true} is 18 bytes, and a
# platform's error page need not be downloaded whole to be refused.
ANSWER_READ_MAX = 64 * 1024
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


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` made safe to store and show: printable characters only, at most ``limit``.

    Line breaks and tabs become spaces; other control and format characters
    (escape sequences, bidi overrides, NULs) become U+FFFD. A cut is marked
    with "...".
    """
    head = text[: limit * 4]  # enough to fill ``limit`` after collapsing spaces
    cleaned = "".join(
        ch if ch.isprintable() else (" " if ch.isspace() else "\ufffd") for ch in head
    )
    cleaned = re.sub(r" {2,}", " ", cleaned).strip()
    if len(cleaned) > limit or len(head) < len(text):
        return cleaned[: max(limit - 3, 0)].rstrip() + "..."
    return cleaned


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str = ""
    http_status: int | None = None
    duration_ms: int = 0

    def __post_init__(self) -> None:
        # The one place that bounds what is stored (last_error, attempts) and
        # shown on the admin job page, whatever made the error.
        object.__setattr__(self, "error", excerpt(self.error, ERROR_MAX))


# -- the token and the post ---------------------------------------------------


def result_payload(job_name: str, resultdata: str, day: date) -> dict[str, Any]:
    """What the platform gets: the job's name and the grader's ``jobdata``."""
    try:
        result = json.loads(resultdata)
    except ValueError:
        result = {}
    jobdata = result.get("jobdata") if isinstance(result, dict) else None
    return {"sTaskName": job_name, "sResultData": jobdata, "date": day.strftime("%d-%m-%Y")}


def check_result_size(result: dict[str, Any], max_result_bytes: int) -> None:
    """Refuse (errorcode 2, nothing stored) a result larger than ``max_result_bytes``.

    Measured as the result token carries it, so that every result the queue
    takes is one the platform client opens.
    """
    size = tokens.result_json_bytes(result.get("jobdata"))
    if size > max_result_bytes:
        raise BadRequest(
            f"Result too large: its jobdata is {size} bytes of JSON, "
            f"over the limit of {max_result_bytes} bytes."
        )


def result_token(
    payload: dict[str, Any],
    queue_key: QueueKey,
    platform_name: str,
    platform_key_pem: str,
    zip_max_bytes: int | None = Settings.result_zip_max_bytes,
) -> str:
    """Signed by the queue (kid = queue key name), encrypted to the platform (kid = its name).

    Compressed only when the JWS is at most ``zip_max_bytes``
    (``result_zip_max_bytes``): JOSE libraries refuse to inflate much more
    by default, and a token without ``zip`` is valid JWE they all open.
    """
    return tokens.seal(
        payload,
        queue_key.private,
        queue_key.name,
        parse_public_key(platform_key_pem),
        platform_name,
        zip_max_bytes=zip_max_bytes,
    )


def post_result(http: requests.Session, url: str, token: str, timeout: float) -> Outcome:
    """POST ``sToken``; success only when the answer is JSON with ``bSuccess`` true.

    The HTTP status is not looked at for success: a platform that says
    ``bSuccess`` true has stored the result, and sending it again would
    grade it twice. Redirects are not followed: requests would post the
    token again to wherever the answer points (an internal address, say) on
    307/308; a redirect is a failed attempt, retried with the usual backoff.
    Only the first ``ANSWER_READ_MAX`` bytes of the answer are read.
    """
    started = time.monotonic()

    def outcome(ok: bool, error: str = "", status: int | None = None) -> Outcome:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(ok, error, status, elapsed)

    try:
        with http.post(
            url,
            data={"sToken": token},
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        ) as response:
            status = response.status_code
            if 300 <= status < 400:
                target = excerpt(response.headers.get("Location", ""), 100) or "nowhere"
                return outcome(
                    False,
                    f"HTTP {status}: redirect to {target} refused "
                    "(the return URL must answer itself)",
                    status,
                )
            # The connect and read timeouts of one post, as the worker's lease allows.
            body = _read_answer(response, started + 2 * timeout)
    except requests.RequestException as exc:
        return outcome(False, f"{type(exc).__name__}: {exc}")
    text = body[:ANSWER_READ_MAX].decode("utf-8", errors="replace")
    if len(body) > ANSWER_READ_MAX:
        return outcome(
            False,
            f"HTTP {status}: the answer is larger than {ANSWER_READ_MAX} bytes: {excerpt(text)}",
            status,
        )
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return outcome(False, f"HTTP {status}: the answer is not JSON: {excerpt(text)}", status)
    if isinstance(answer, dict) and answer.get("bSuccess") is True:
        return outcome(True, "", status)
    reason = answer.get("sError") if isinstance(answer, dict) else None
    said = reason if isinstance(reason, str) and reason else text
    return outcome(False, f"HTTP {status}: platform refused: {excerpt(said)}", status)


def _read_answer(response: requests.Response, deadline: float) -> bytes:
    """The answer's body, at most one byte more than ``ANSWER_READ_MAX`` (to tell it was cut).

    The read timeout bounds each read, not the whole: a platform dribbling a
    byte per read could hold the post past the row's lease, and another
    worker would then post the result again. So the body must be in by
    ``deadline`` (time.monotonic()).
    """
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > ANSWER_READ_MAX:
            break
        if time.monotonic() > deadline:
            raise requests.exceptions.ReadTimeout("the answer was still arriving at the deadline")
    return b"".join(chunks)[: ANSWER_READ_MAX + 1]


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
    precheck: bool = True,
) -> list[Due]:
    """Claim up to ``limit`` due rows for ``holder`` (unique per claim) until the lease ends.

    ``precheck=False`` skips the read that comes first: for a caller that
    knows rows are due (a result was just stored, the last claim was full).
    """
    # Most looks find nothing: ask a reader first, so an idle worker never
    # takes SQLite's write lock.
    if precheck and not any_due(db, due_before):
        return []
    with db.transaction() as session:
        return _claim_rows(session, db.dialect, holder, lease_sec, limit, due_before)


def any_due(db: Database, due_before: datetime | None = None) -> bool:
    """Whether an unclaimed row is due (by ``due_before``, default now); only reads."""
    now = utcnow()
    with db.reading() as session:
        found = session.scalar(select(Delivery.id).where(_due(now, due_before or now)).limit(1))
    return found is not None


def _claim_rows(
    session: Session,
    dialect: str,
    holder: str,
    lease_sec: float,
    limit: int,
    due_before: datetime | None,
) -> list[Due]:
    now = utcnow()
    due = _due(now, due_before or now)
    query = select(Delivery.id).where(due).order_by(Delivery.next_attempt_at, Delivery.id)
    query = query.limit(limit)
    if dialect != "sqlite":
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
        _release_rows(session, holder, ids)


def _release_rows(session: Session, holder: str, ids: list[int]) -> None:
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.locked_by == holder)
        .values(locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )


class Finished(NamedTuple):
    """A post that is over, waiting to be recorded under the claim it was made with."""

    due: Due
    holder: str
    outcome: Outcome


@dataclass(frozen=True)
class Recorded:
    state: str | None  # None: the claim was lost meanwhile, nothing was overwritten
    retry_at: datetime | None = None  # a failed row's next try
    brought_forward: bool = False  # this success made the platform's other rows due now


def record(db: Database, due: Due, holder: str, outcome: Outcome, settings: Settings) -> str | None:
    """Store one attempt and the row's next state; None if the claim was lost meanwhile.

    A claim is lost when an operator asked for a redelivery while the post
    was under way, or the lease ran out: the row then belongs to someone
    else and this outcome must not overwrite it.
    """
    return record_many(db, [Finished(due, holder, outcome)], settings)[0]


def record_many(db: Database, finished: Sequence[Finished], settings: Settings) -> list[str | None]:
    """:func:`record` for several posts in one transaction; the states in the same order."""
    if not finished:
        return []
    with db.transaction() as session:
        return [r.state for r in _record_rows(session, finished, settings)]


def _record_rows(
    session: Session, finished: Sequence[Finished], settings: Settings
) -> list[Recorded]:
    now = utcnow()
    recorded: list[Recorded | None] = [None] * len(finished)
    lost: list[int] = []
    forward: dict[int, None] = {}  # platforms whose backed-off rows go now (ordered set)
    # Rows in id order: two workers recording at once on MariaDB lock them in
    # the same order, so they wait for each other instead of deadlocking.
    for index in sorted(range(len(finished)), key=lambda i: finished[i].due.id):
        due, holder, outcome = finished[index]
        state, values, retry_at = _next_state(due, outcome, settings, now)
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
        if won.rowcount != 1:
            lost.append(due.id)
            recorded[index] = Recorded(None)
            continue
        if outcome.ok and due.attempts > 0:
            # The platform answers again: its rows waiting out a backoff go now
            # instead of up to delivery_backoff_max_sec later. (Only after a
            # retry succeeds: a first-try success rarely follows an outage,
            # and this spares an UPDATE per delivery.)
            forward[due.platform_id] = None
        elif state == DeliveryState.GIVEN_UP:
            events.log_event(
                session,
                events.DELIVERY_GIVEN_UP,
                job_id=due.job_id,
                message=f"gave up after {due.attempts + 1} attempts: {outcome.error}",
            )
        elif not outcome.ok and due.attempts == 0:
            # One event when a result starts failing, not one per retry: the
            # attempts table has every try.
            events.log_event(
                session, events.DELIVERY_FAILED, job_id=due.job_id, message=outcome.error
            )
        recorded[index] = Recorded(state, retry_at, outcome.ok and due.attempts > 0)

    # A lost row keeps its attempt (the post did happen) unless the job was
    # deleted meanwhile, which took the row with it.
    gone = set(lost)
    if lost:
        gone -= set(session.scalars(select(Delivery.id).where(Delivery.id.in_(lost))))
    attempts = [
        {
            "delivery_id": due.id,
            "time": now,
            "ok": outcome.ok,
            "http_status": outcome.http_status,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
        }
        for due, _holder, outcome in finished
        if due.id not in gone
    ]
    if attempts:
        session.execute(insert(DeliveryAttempt), attempts)

    if forward:
        # Not the rows just recorded: one that failed in this batch was tried
        # a moment ago, with the platform up; it waits out its own backoff.
        session.execute(
            update(Delivery)
            .where(
                Delivery.state == DeliveryState.PENDING,
                Delivery.next_attempt_at > now,
                Delivery.platform_id.in_(list(forward)),
                Delivery.id.not_in([f.due.id for f in finished]),
            )
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
    return [r if r is not None else Recorded(None) for r in recorded]


def _next_state(
    due: Due, outcome: Outcome, settings: Settings, now: datetime
) -> tuple[str, dict[str, Any], datetime | None]:
    """The row's new state, the values that say so, and its next try if it has one."""
    values: dict[str, Any] = {
        "attempts": Delivery.attempts + 1,
        "last_attempt_at": now,
        "locked_by": None,
        "locked_until": None,
    }
    if outcome.ok:
        values.update(state=DeliveryState.DELIVERED, delivered_at=now, last_error="")
        return DeliveryState.DELIVERED, values, None
    if (now - due.created_at).total_seconds() >= settings.delivery_give_up_after_sec:
        values.update(state=DeliveryState.GIVEN_UP, last_error=outcome.error)
        return DeliveryState.GIVEN_UP, values, None
    retry_at = now + timedelta(seconds=backoff_sec(due.attempts + 1, settings))
    values.update(next_attempt_at=retry_at, last_error=outcome.error)
    return DeliveryState.PENDING, values, retry_at


def next_due_in(db: Database, max_wait: float) -> float:
    """Seconds until an unclaimed pending row is due, at most ``max_wait``; 0 if one is due."""
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
    """Posts due deliveries, up to ``delivery_concurrency`` at once.

    Drive it from one thread (:meth:`run_forever`, :meth:`step` or
    :meth:`run_pass`); the posts run on a small thread pool it owns, each
    pool thread with its own HTTP session (``requests.Session`` is not
    documented as thread-safe, and a session per thread keeps its
    connections alive). Only the driving thread touches the database: it
    claims rows for the free post slots and records finished posts in
    batches, so a busy worker spends a few transactions per batch, not per
    result.
    """

    def __init__(self, db: Database, settings: Settings, keys: QueueKeys) -> None:
        self.db = db
        self.settings = settings
        self.keys = keys
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.stopping = threading.Event()
        # Set by kicks, by stop() and by every post that ends.
        self.wake = threading.Event()
        self.concurrency = max(1, settings.delivery_concurrency)
        # A claim waits until this many post slots are free: claims and
        # records then cover several rows each, yet a slow post holds only
        # its own slot.
        self._refill_at = (self.concurrency + 1) // 2
        self._claims = itertools.count(1)
        self._failing_since: float | None = None
        self._last_failure_log = 0.0
        # A post may take a connect and a read timeout. Rows are claimed only
        # for free slots, so each starts at once; its outcome is recorded at
        # the latest when the posts under way at its end are over too.
        self.post_budget = 2 * settings.delivery_timeout_sec + 1
        self.lease_sec = 2 * self.post_budget + GATHER_SEC + LEASE_SLACK_SEC
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        # Only the driving thread reads or changes these.
        self._in_flight: dict[Future[Outcome | None], tuple[Due, str]] = {}
        self._finished: list[tuple[Due, str, Outcome | None]] = []
        self._last_write = 0.0
        # The next time an idle worker reads the outbox (time.monotonic()).
        self._look_at = 0.0
        # Rows are probably due (a kick, a full claim, rows brought forward):
        # claim without reading first.
        self._hint = False

    def kick(self) -> None:
        """A result was stored: claim it at once, without reading the outbox first."""
        self._hint = True
        self.wake.set()

    def stop(self) -> None:
        """Warm stop: finish the posts under way, record them, give back the rest."""
        self.stopping.set()
        self.wake.set()

    def close(self) -> None:
        """Let the post threads end and close their HTTP sessions."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for http in sessions:
            http.close()

    # -- one post -------------------------------------------------------------

    def attempt(self, due: Due) -> Outcome:
        if not due.url:
            return Outcome(False, "the platform has no return URL any more")
        if due.platform_key_pem is None:
            return Outcome(False, "the platform has no active public key")
        payload = result_payload(due.job_name, due.resultdata, utcnow().date())
        try:
            token = result_token(
                payload,
                self.keys.active,
                due.platform_name,
                due.platform_key_pem,
                self.settings.result_zip_max_bytes,
            )
        except Exception as exc:  # a bad stored key must not stop the worker
            return Outcome(False, f"cannot make the result token: {type(exc).__name__}")
        return post_result(self._http(), due.url, token, self.settings.delivery_timeout_sec)

    def _http(self) -> requests.Session:
        http: requests.Session | None = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = requests.Session()
            with self._sessions_lock:
                self._sessions.append(http)
        return http

    def _post(self, due: Due) -> Outcome | None:
        """On a pool thread: None when the worker is stopping and the row was not tried."""
        if self.stopping.is_set():
            return None
        try:
            return self.attempt(due)
        except Exception as exc:
            # Recorded as a failed try: the row keeps its backoff and give-up
            # horizon instead of sitting claimed until its lease ends.
            log.exception("delivery %s: the post failed unexpectedly", due.id)
            return Outcome(False, f"{type(exc).__name__}: {exc}")

    def _posts_ended(self, _future: Future[Outcome | None]) -> None:
        self.wake.set()

    # -- the driving thread's bookkeeping ---------------------------------------

    def _collect(self) -> None:
        """Move the posts that are over to the outcomes waiting to be recorded."""
        for future in [f for f in self._in_flight if f.done()]:
            due, holder = self._in_flight.pop(future)
            self._finished.append((due, holder, future.result()))

    def _write(
        self, claim: int = 0, due_before: datetime | None = None
    ) -> tuple[Counter[str], int]:
        """One transaction: record the finished posts, give back the untried rows, and
        claim up to ``claim`` rows, which start posting at once.

        Returns the counts of the new states recorded and how many rows were
        claimed. If it fails (the database is away), the outcomes stay here
        for the next try: the claims are still ours, and an outcome forgotten
        would mean a second post once the lease ends.
        """
        tried = [Finished(d, h, o) for d, h, o in self._finished if o is not None]
        untried: dict[str, list[int]] = {}
        for due, holder, outcome in self._finished:
            if outcome is None:
                untried.setdefault(holder, []).append(due.id)
        holder = f"{self.id}/{next(self._claims)}"
        with self.db.transaction() as session:
            recorded = _record_rows(session, tried, self.settings) if tried else []
            for owner, ids in untried.items():
                _release_rows(session, owner, ids)
            batch = (
                _claim_rows(session, self.db.dialect, holder, self.lease_sec, claim, due_before)
                if claim > 0
                else []
            )
        self._finished = []
        self._last_write = time.monotonic()
        wall = utcnow()
        for result in recorded:
            if result.retry_at is not None:
                delay = (result.retry_at - wall).total_seconds()
                self._look_at = min(self._look_at, time.monotonic() + max(delay, 0.0))
            if result.brought_forward:
                self._hint = True
        self._start(batch, holder)
        return Counter(r.state or "lost" for r in recorded), len(batch)

    def _start(self, batch: list[Due], holder: str) -> None:
        if batch and self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="gq-post")
        for index, due in enumerate(batch):
            assert self._pool is not None
            try:
                future = self._pool.submit(self._post, due)
            except RuntimeError:
                # The interpreter is exiting (no new threads): nothing more
                # can be posted, so the rest goes back to the other workers.
                self.stopping.set()
                release(self.db, holder, [d.id for d in batch[index:]])
                return
            self._in_flight[future] = (due, holder)
            future.add_done_callback(self._posts_ended)

    # -- ways to run it -------------------------------------------------------

    def run_pass(self) -> Counter[str]:
        """Try every delivery due now, each once; returns counts by new state.

        Rows that fail get a next try in the future, after this pass's
        cut-off, so a pass always ends (``graderqueue deliver --once``).
        """
        cutoff = utcnow()
        counts: Counter[str] = Counter()
        claiming, first = True, True
        while True:
            self.wake.clear()
            self._collect()
            free = self.concurrency - len(self._in_flight)
            claiming = claiming and not self.stopping.is_set()
            claim = 0
            if claiming and free >= self._refill_at:
                if first and not any_due(self.db, cutoff):
                    claiming = False  # the usual --once: nothing due, and only a read
                else:
                    claim = free
                first = False
            # Outcomes are recorded with each claim (which keeps every row
            # within its lease) and when the last post is over.
            if claim or (self._finished and not self._in_flight):
                recorded, got = self._write(claim, cutoff)
                counts += recorded
                if claim:
                    # Fewer rows than asked for: nothing else was due before the cut-off.
                    claiming = got == claim
                continue
            if not self._in_flight and not self._finished:
                return counts
            self.wake.wait(self.post_budget)

    def run_forever(self, alive: Callable[[], bool] = lambda: True) -> None:
        """Deliver as rows fall due, until :meth:`stop` or ``alive()`` turns false.

        Survives database outages: a failed turn is tried again after the
        bounded wait. Ends with a warm stop.
        """
        try:
            while not self.stopping.is_set() and alive():
                self.step()
        finally:
            self.stopping.set()
            self._drain()
            self.close()

    def step(self) -> None:
        """One turn: record what ended, claim for free slots, then wait for what comes next."""
        max_wait = max(self.settings.delivery_poll_sec, 0.05)
        self.wake.clear()  # anything that happens from here on ends the wait below at once
        try:
            wait = self._turn(max_wait)
            if self._failing_since is not None:
                log.info("delivery works again")
                self._failing_since = None
        except Exception:
            self._log_failure()
            wait = max_wait
        self.wake.wait(wait)

    def _ready_at(self, now: float) -> float:
        # With posts under way or outcomes to record, more posts end and more
        # results come a moment later: gathering them for GATHER_SEC lets one
        # transaction do the work of several. An idle worker acts at once.
        if self._in_flight or self._finished:
            return self._last_write + GATHER_SEC
        return now

    def _turn(self, max_wait: float) -> float:
        self._collect()
        now = time.monotonic()
        free = self.concurrency - len(self._in_flight)
        room = free >= self._refill_at and not self.stopping.is_set()
        if now >= self._ready_at(now):
            claim, looked = 0, False
            if room and self._hint:
                # Cleared before the claim reads: a kick from now on is seen next turn.
                self._hint = False
                claim = free
            elif room and now >= self._look_at:
                # The cheap look: one read says both whether anything is due
                # and, if not, how long to sleep; no write lock while idle.
                wait = next_due_in(self.db, max_wait)
                if wait > 0:
                    self._look_at = time.monotonic() + wait
                else:
                    claim, looked = free, True
            if claim or (self._finished and (room or not self._in_flight)):
                try:
                    _, got = self._write(claim)
                except Exception:
                    self._hint = self._hint or bool(claim)  # still due: try again after the wait
                    raise
                if claim and got == claim:
                    self._hint = True  # probably more where these came from
                elif looked and got == 0:
                    # Due rows that another worker is claiming right now:
                    # never spin on the database.
                    self._look_at = time.monotonic() + BUSY_WAIT_SEC
                elif claim and self._look_at <= time.monotonic():
                    # The claim answered this look too: nothing else is due now.
                    self._look_at = time.monotonic() + max_wait
        return self._wait_after_turn(max_wait)

    def _wait_after_turn(self, max_wait: float) -> float:
        """Until the next turn can do something; a post that ends wakes it sooner."""
        now = time.monotonic()
        if self.stopping.is_set():
            return self.post_budget if self._in_flight else 0.0
        ready_at = self._ready_at(now)
        until = now + max_wait
        if self.concurrency - len(self._in_flight) >= self._refill_at:
            if self._hint or self._finished:
                until = min(until, ready_at)
            until = min(until, max(self._look_at, ready_at))
        return min(max_wait, max(0.0, until - now))

    def _drain(self) -> None:
        """Warm stop: wait for the posts under way, record them, give back the untried rows."""
        deadline = time.monotonic() + self.post_budget
        while self._in_flight and time.monotonic() < deadline:
            self.wake.clear()
            self._collect()
            if self._in_flight:
                self.wake.wait(max(0.0, min(1.0, deadline - time.monotonic())))
        self._collect()
        if not self._finished:
            return
        try:
            self._write()
        except Exception:
            log.warning("could not record the last deliveries before stopping", exc_info=True)

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
        """Stop and wait for the posts under way, so that their outcomes are recorded."""
        worker, thread = self.worker, self.thread
        if worker is None or thread is None or self._pid != os.getpid():
            return
        worker.stop()
        thread.join(self.settings.delivery_timeout_sec * 2 + 2 if timeout is None else timeout)


def _stop_at_exit(ref: weakref.ref[InProcessDelivery]) -> None:
    # A web worker exiting (gunicorn's SIGTERM): let the posts under way be recorded.
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
