"""Wake idle grading servers over UDP when jobs wait for them.

The datagram is ``wakeup`` (or, for a server with a wake-up secret, a
timestamped HMAC-signed ``wakeup <ts> <mac>``); a willing server answers
``ok``. Wake-ups run on a background thread so a platform's answer never
waits for them.
"""

from __future__ import annotations

import functools
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gradercommon.wakeup_auth import sign
from graderqueue.cache import TTLCache
from graderqueue.config import Settings
from graderqueue.observability import metrics
from graderqueue.queue.claim import PAUSED
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import (
    Job,
    JobStatus,
    JobType,
    QueueFlag,
    Server,
    ServerType,
    utcnow,
)

log = logging.getLogger(__name__)

# Never try to wake more servers than this for one burst of jobs.
MAX_WAKE_PER_BURST = 64


def parse_url(url: str) -> tuple[str, int] | None:
    """``udp://host:port`` to (host, port); None if it is not one."""
    try:
        parts = urlsplit(url.strip())
        if parts.scheme != "udp" or not parts.hostname or parts.port is None:
            return None
        return parts.hostname, parts.port
    except ValueError:
        return None


def wakeup_datagram(secret: str, now: float | None = None) -> bytes:
    if not secret:
        return b"wakeup"
    return sign(secret, time.time() if now is None else now)


def send_wakeup(url: str, secret: str = "", timeout: float = 1.0) -> bool:
    """Send one wake-up and wait for the answer; True only for ``ok``."""
    target = parse_url(url)
    if target is None:
        return False
    try:
        infos = socket.getaddrinfo(target[0], target[1], type=socket.SOCK_DGRAM)
    except OSError:
        return False
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(wakeup_datagram(secret), address)
            answer, _ = sock.recvfrom(64)
        except OSError:
            return False
    return answer.strip() == b"ok"


@dataclass(frozen=True)
class Candidate:
    id: int
    wakeup_url: str
    wakeup_secret: str
    max_concurrent_jobs: int
    held: int
    last_poll_time: object
    wakeup_fails: int


def _record(session: Session, server_id: int, ok: bool) -> None:
    metrics.wakeup_sent(ok)
    now = utcnow()
    if ok:
        session.execute(
            update(Server)
            .where(Server.id == server_id)
            .values(wakeup_fails=0, last_wakeup_time=now)
        )
    else:
        session.execute(
            update(Server)
            .where(Server.id == server_id)
            .values(wakeup_fails=Server.wakeup_fails + 1, last_wakeup_time=now)
        )
        events.log_event(session, events.WAKEUP_FAILED, server_id=server_id)


def _candidates(session: Session, type_ids: list[int]) -> list[Candidate]:
    held = (
        select(Job.sent_to, func.count().label("held"))
        .where(Job.status == JobStatus.SENT)
        .group_by(Job.sent_to)
        .subquery()
    )
    query = (
        select(
            Server.id,
            Server.wakeup_url,
            Server.wakeup_secret,
            Server.max_concurrent_jobs,
            func.coalesce(held.c.held, 0).label("held"),
            Server.last_poll_time,
            Server.wakeup_fails,
        )
        .outerjoin(held, held.c.sent_to == Server.id)
        .join(ServerType, ServerType.id == Server.type_id)
        # A drained server or a paused type would get nothing: no point waking it.
        .where(
            Server.type_id.in_(type_ids),
            Server.wakeup_url != "",
            Server.drained.is_(False),
            ServerType.paused.is_(False),
        )
    )
    if session.scalar(select(QueueFlag.name).where(QueueFlag.name == PAUSED)) is not None:
        return []  # the whole queue is paused (`graderqueue pause`)
    return [Candidate(*row) for row in session.execute(query).all()]


def _order(candidates: list[Candidate], strategy: str) -> list[Candidate]:
    epoch = utcnow() - timedelta(days=36500)

    def last_poll(c: Candidate):  # type: ignore[no-untyped-def]
        return c.last_poll_time or epoch

    if strategy == "last":
        # Rotate: the server idle longest first.
        return sorted(candidates, key=lambda c: (last_poll(c), c.held))
    # "first": busy servers first, to keep few servers active.
    return sorted(candidates, key=lambda c: (-c.held, -last_poll(c).timestamp()))


def all_listening(candidates: list[Candidate], settings: Settings) -> bool:
    """Every candidate polled in the last ``wakeup_recent_sec`` (true of none at all)."""
    recent = utcnow() - timedelta(seconds=settings.wakeup_recent_sec)
    polls = [c.last_poll_time for c in candidates]
    return all(t is not None and t >= recent for t in polls)  # type: ignore[operator]


def wake_for_types(
    db: Database,
    settings: Settings,
    type_ids: Iterable[int],
    candidates: list[Candidate] | None = None,
) -> int:
    """Wake as many idle servers of these types as there are waiting jobs.

    Servers that polled in the last ``wakeup_recent_sec`` are already
    listening and count as woken. Returns how many servers were woken.
    ``candidates`` may come from a cache a second old: it only orders and
    filters whom to try.
    """
    types = sorted(set(type_ids))
    if not types:
        return 0
    if candidates is None:
        with db.reading() as session:
            candidates = _candidates(session, types)
    if all_listening(candidates, settings):
        return 0  # nobody to wake: every server is polling already (or there is none)
    needed = _waiting_jobs(db, types, min(len(candidates), MAX_WAKE_PER_BURST))
    recent = utcnow() - timedelta(seconds=settings.wakeup_recent_sec)

    def listening(c: Candidate) -> bool:
        return c.last_poll_time is not None and c.last_poll_time >= recent  # type: ignore[operator]

    tried: dict[int, bool] = {}  # server id -> answered
    healthy = _order([c for c in candidates if c.wakeup_fails == 0], settings.wakeup_strategy)
    for cand in healthy:
        if needed <= 0:
            break
        if cand.max_concurrent_jobs and cand.held >= cand.max_concurrent_jobs:
            continue
        if listening(cand):
            needed -= 1  # already listening: it will take one
            continue
        tried[cand.id] = send_wakeup(
            cand.wakeup_url, cand.wakeup_secret, settings.wakeup_timeout_sec
        )
        needed -= tried[cand.id]
    if needed > 0 and not any(tried.values()):
        # Second pass: any matching server, idle longest first, until one answers.
        for cand in _order(candidates, "last"):
            if cand.id in tried or listening(cand):
                continue
            tried[cand.id] = send_wakeup(
                cand.wakeup_url, cand.wakeup_secret, settings.wakeup_timeout_sec
            )
            if tried[cand.id]:
                break
    if tried:
        with db.transaction() as session:
            for server_id, ok in tried.items():
                _record(session, server_id, ok)
    return sum(tried.values())


def _waiting_jobs(db: Database, types: list[int], limit: int) -> int:
    """Queued jobs of these types, counted only up to ``limit`` (the servers there are
    to wake): the cost stays bounded however deep the queue is."""
    with db.reading() as session:
        return len(
            session.execute(
                select(JobType.job_id)
                .where(JobType.type_id.in_(types), JobType.status == JobStatus.QUEUED)
                .limit(limit)
            ).all()
        )


def wake_server(db: Database, settings: Settings, server_id: int) -> bool:
    """Wake one server (interface button, ``wakeup`` API request)."""
    with db.reading() as session:
        server = session.get(Server, server_id)
        if server is None:
            return False
        url, secret = server.wakeup_url, server.wakeup_secret
    ok = send_wakeup(url, secret, settings.wakeup_timeout_sec)
    with db.transaction() as session:
        _record(session, server_id, ok)
    return ok


def retry_failed(db: Database, settings: Settings) -> tuple[int, int]:
    """Cron: try again every server whose wake-ups failed. Returns (tried, woken)."""
    with db.reading() as session:
        rows = session.execute(
            select(Server.id, Server.wakeup_url, Server.wakeup_secret).where(
                Server.wakeup_fails > 0
            )
        ).all()
    woken = 0
    for row in rows:
        ok = send_wakeup(row.wakeup_url, row.wakeup_secret, settings.wakeup_timeout_sec)
        woken += ok
        with db.transaction() as session:
            _record(session, row.id, ok)
    return len(rows), woken


class Waker:
    """A background thread that runs wake-ups, coalescing bursts of requests."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._queue: queue.Queue[list[int]] = queue.Queue()
        # Who could be woken changes slowly; a second-old list is good enough
        # and spares a query per queued job.
        self._candidates = TTLCache(ttl=1.0)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def request(self, type_ids: Iterable[int]) -> None:
        types = sorted(set(type_ids))
        known = self._candidates.peek(tuple(types))
        if known is not None and all_listening(known, self.settings):
            # What the wake-up thread would decide from the same list: a busy
            # queue whose servers all poll (or one with none) spares a thread
            # hand-off per queued job.
            return
        self._queue.put(types)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="gq-wakeup", daemon=True)
                self._thread.start()

    def _load(self, types: tuple[int, ...]) -> list[Candidate]:
        with self.db.reading() as session:
            return _candidates(session, list(types))

    def _run(self) -> None:
        while True:
            try:
                types = set(self._queue.get(timeout=60))
            except queue.Empty:
                with self._lock:  # exit only if nothing slipped in meanwhile
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            while True:  # take everything queued meanwhile in one go
                try:
                    types.update(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                key = tuple(sorted(types))
                candidates = self._candidates.get(key, functools.partial(self._load, key))
                wake_for_types(self.db, self.settings, types, candidates)
            except Exception:
                log.warning("wake-up of servers failed", exc_info=True)
