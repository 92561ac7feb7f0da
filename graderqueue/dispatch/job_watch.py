"""One thread per web worker that follows the jobs its event streams watch.

``GET /api/v1/jobs/{id}/events`` streams a job's state and position. However
many streams are open, the watcher reads all their jobs together once each
``events_poll_sec``: one query for the states, and a few per (server type,
priority) for the positions (queue/position.py), never one per stream.
Reading the shared database, not this process's memory, makes changes made
on any node show on every node.

A stream holds one of the worker's threads while it is open (gthread), as a
long-poll does; ``events_max_streams`` bounds how many at once (beyond: 503),
and ``events_max_sec`` how long each lasts before the client resumes with
``Last-Event-ID``, so streams never take every thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from graderqueue.config import Settings
from graderqueue.queue import job_view, position
from graderqueue.store.db import Database
from graderqueue.store.models import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seen:
    """What a stream has told its client: a state and, while queued, a position."""

    state: str
    position: int | None = None

    def event_id(self) -> str:
        return f"{self.state}:{'' if self.position is None else self.position}"

    @classmethod
    def parse(cls, text: str | None) -> Seen | None:
        """A ``Last-Event-ID`` back into what the client had; None if it is not ours."""
        state, sep, pos = (text or "").partition(":")
        if not sep or state not in job_view.STATUS_OF:
            return None
        return cls(state, int(pos) if pos.isdigit() and len(pos) < 12 else None)


class JobWatch:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._poll_sec = settings.events_poll_sec
        self._max_streams = settings.events_max_streams
        self._changed = threading.Condition()
        self._watched: dict[int, int] = {}  # job id -> open streams
        self._latest: dict[int, Seen] = {}
        self._round = 0
        self._thread: threading.Thread | None = None
        self.reads = 0  # rounds that read the database (benchmarks report it)

    def open(self, job_id: int) -> bool:
        """Watch a job for one more stream; False when this worker has no stream left."""
        with self._changed:
            if sum(self._watched.values()) >= self._max_streams:
                return False
            self._watched[job_id] = self._watched.get(job_id, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="job-watch", daemon=True)
                self._thread.start()
            return True

    def close(self, job_id: int) -> None:
        with self._changed:
            left = self._watched.get(job_id, 0) - 1
            if left > 0:
                self._watched[job_id] = left
            else:
                self._watched.pop(job_id, None)
                self._latest.pop(job_id, None)

    def wait(self, job_id: int, after_round: int, timeout: float) -> tuple[int, Seen | None]:
        """The next round after ``after_round`` (or the timeout): (round, job's state)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._round <= after_round:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._round, self._latest.get(job_id)

    @property
    def current_round(self) -> int:
        with self._changed:
            return self._round

    def _run(self) -> None:
        while True:
            with self._changed:
                ids = list(self._watched)
            if not ids:
                # Nothing to watch: the thread ends; the next open() starts another.
                with self._changed:
                    if not self._watched:
                        self._thread = None
                        return
                continue
            try:
                latest = self._read(ids)
            except Exception:  # the database may be away: streams keep their last state
                log.warning("event streams: reading job states failed", exc_info=True)
                latest = {}
            with self._changed:
                self._latest.update(latest)
                self._round += 1
                self._changed.notify_all()
            time.sleep(self._poll_sec)

    def _read(self, ids: list[int]) -> dict[int, Seen]:
        self.reads += 1
        with self._db.reading() as session:
            statuses = dict(
                session.execute(select(Job.id, Job.status).where(Job.id.in_(ids))).all()
            )
            queued_ids = [i for i, s in statuses.items() if job_view.STATE_OF[s] == "QUEUED"]
            places = (
                position.positions(session, position.queued_jobs(session, queued_ids))
                if queued_ids
                else {}
            )
        return {
            job_id: Seen(job_view.STATE_OF[status], places.get(job_id))
            for job_id, status in statuses.items()
        }
