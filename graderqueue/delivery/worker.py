"""The delivery worker: posts due results, up to ``delivery_concurrency`` at once."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

import requests

from graderqueue.config import Settings
from graderqueue.delivery import outbox
from graderqueue.delivery.outbox import Due, Finished
from graderqueue.delivery.post import Outcome, post_result
from graderqueue.logs import work_unit
from graderqueue.observability import metrics
from graderqueue.protocol.keys import QueueKeys
from graderqueue.protocol.results import result_payload, result_token
from graderqueue.store.db import Database
from graderqueue.store.models import utcnow

log = logging.getLogger(__name__)


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
        self.lease_sec = (
            2 * self.post_budget + settings.delivery_gather_sec + settings.delivery_lease_slack_sec
        )
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

    @work_unit  # one id per delivery attempt
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
            recorded = outbox.record(session, tried, self.settings) if tried else []
            for owner, ids in untried.items():
                outbox.release(session, owner, ids)
            batch = (
                outbox.claim(session, self.db.dialect, holder, self.lease_sec, claim, due_before)
                if claim > 0
                else []
            )
        metrics.deliveries_recorded(tried, recorded)
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
                with self.db.transaction() as session:
                    outbox.release(session, holder, [d.id for d in batch[index:]])
                return
            self._in_flight[future] = (due, holder)
            future.add_done_callback(self._posts_ended)

    # -- ways to run it -------------------------------------------------------

    @work_unit
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
                if first and not outbox.any_due(self.db, cutoff):
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

    @work_unit  # one id per turn of the driving thread
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
        # results come a moment later: gathering them for delivery_gather_sec lets one
        # transaction do the work of several. An idle worker acts at once.
        if self._in_flight or self._finished:
            return self._last_write + self.settings.delivery_gather_sec
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
                wait = outbox.next_due_in(self.db, max_wait)
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
                    self._look_at = time.monotonic() + self.settings.delivery_busy_wait_sec
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
        if (
            self._failing_since is None
            or now - self._last_failure_log >= self.settings.failure_log_interval_sec
        ):
            if self._failing_since is None:
                self._failing_since = now
            self._last_failure_log = now
            log.warning("delivery pass failed; trying again shortly", exc_info=True)
