"""Jobs done over a window, per chart bar: the dashboard's charts.

Every query is bounded by the ``jobs.grading_end_time`` index within the
window: nothing here counts or scans the whole jobs table.

Charts over long windows would still read hundreds of thousands of rows, so
their averages come from a sample of short time slices spread through each
bar (counts stay exact), and bars that are over are remembered in a
:class:`~graderqueue.admin.buckets.BucketCache`: a dashboard costs the full
price once per hour, then only its current bar.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from graderqueue.admin.buckets import Bucket, BucketCache
from graderqueue.admin.durations import SecondsBetween
from graderqueue.admin.windows import Window
from graderqueue.store import events
from graderqueue.store.models import Event, Job, Result, utcnow

EPOCH = datetime(1970, 1, 1)

# About this many rows are read to compute a window's averages, shared
# evenly between its bars (so the running bar alone costs little).
SAMPLE_ROWS = 10_000
# Time slices sampled per chart bar. Jobs finished close in time were also
# received close in time, so their rows share database pages: a slice costs
# a few page reads, where as many scattered rows would cost one each.
SLICES_PER_BUCKET = 6
# Events that end an attempt without a result: a result reporting an error,
# a server letting go of the job, a lease that ran out (logged when another
# server takes the job). Counted when they happen, from the event log.
FAILED_ATTEMPT = (events.BAD_RESULT, events.RELEASED, events.TIMEOUT)
# A job no server will get any more (too many failed attempts).
GAVE_UP = (events.JOB_ERROR,)
# A bar is final once this long over: results arriving late (clock skew
# between nodes, a commit in flight) still land in it before it is cached.
BUCKET_SETTLE = timedelta(minutes=2)


@dataclass
class Activity:
    window: Window
    start: datetime
    now: datetime
    buckets: list[Bucket] = field(default_factory=list)

    def _total(self, name: str) -> float:
        return sum(getattr(b, name) for b in self.buckets)

    @property
    def seconds(self) -> float:
        return self._total("seconds")

    @property
    def done(self) -> int:
        return int(self._total("done"))

    @property
    def sampled(self) -> int:
        return int(self._total("sampled"))

    @property
    def per_minute(self) -> float:
        return self.done * 60.0 / self.seconds if self.seconds else 0.0

    def _weighted(self, name: str) -> float:
        """A per-job average over the window, each bar weighted by its real job count."""
        weight = sum(b.done for b in self.buckets if b.sampled)
        if not weight:
            return 0.0
        return sum(getattr(b, name) * b.done for b in self.buckets if b.sampled) / weight

    @property
    def wait_avg(self) -> float:
        return self._weighted("wait_avg")

    @property
    def wait_max(self) -> float:
        return max((b.wait_max for b in self.buckets), default=0.0)

    @property
    def grading_avg(self) -> float:
        return self._weighted("grading_avg")

    @property
    def busy_servers(self) -> float:
        return sum(b.busy_servers * b.seconds for b in self.buckets) / self.seconds

    @property
    def queue_length(self) -> float:
        return sum(b.queue_length * b.seconds for b in self.buckets) / self.seconds

    @property
    def failures(self) -> float:
        return self._total("failures")

    @property
    def gave_up(self) -> int:
        return int(self._total("gave_up"))

    @property
    def success_rate(self) -> float | None:
        """Passed among judged results (grader errors left out), bars weighted by
        their judged results."""
        judged = [b for b in self.buckets if b.judged]
        weight = sum(b.done * b.judged / b.sampled for b in judged)
        if not weight:
            return None
        return sum(b.success_rate * b.done * b.judged / b.sampled for b in judged) / weight


def time_slices(
    start: datetime, seconds: float, fraction: float, count: int
) -> list[tuple[datetime, datetime]]:
    """``count`` short slices spread evenly through a period, covering ``fraction`` of it."""
    span = timedelta(seconds=seconds)
    if fraction >= 1.0:
        return [(start, start + span)]
    part = span / count
    width = part * fraction
    return [
        (start + part * i + (part - width) / 2, start + part * i + (part + width) / 2)
        for i in range(count)
    ]


def _in_slices(column: Any, slices: list[tuple[datetime, datetime]]) -> Any:
    # Several ranges of one index in one query: every engine reads just those.
    return or_(*(and_(column >= a, column < b) for a, b in slices))


def activity(
    session: Session,
    window: Window,
    now: datetime | None = None,
    cache: BucketCache | None = None,
) -> Activity:
    """Jobs done in the window, per chart bar: counts exact, the rest sampled if many."""
    now = now or utcnow()
    tick = window.tick
    result, todo = _bars(window, now, cache)
    _count(session, todo, tick)
    _count_failures(session, todo, tick)
    _sample(session, todo, SAMPLE_ROWS // window.buckets)
    if cache is not None:
        for bucket in todo:
            if bucket.start + timedelta(seconds=tick) <= now - BUCKET_SETTLE:
                cache.put(tick, bucket)
    return result


def _bars(
    window: Window, now: datetime, cache: BucketCache | None
) -> tuple[Activity, list[Bucket]]:
    """The window's bars, aligned on multiples of its tick; and those still to compute."""
    tick = window.tick
    last = math.floor((now - EPOCH).total_seconds() / tick)
    first = last - window.buckets + 1
    bounds = [EPOCH + timedelta(seconds=(first + i) * tick) for i in range(window.buckets + 1)]
    result = Activity(window=window, start=bounds[0], now=now)
    todo: list[Bucket] = []
    for lo, hi in itertools.pairwise(bounds):
        settled = hi <= now - BUCKET_SETTLE
        cached = cache.get(tick, lo) if cache is not None and settled else None
        bucket = cached or Bucket(
            start=lo, seconds=(min(hi, now) - lo).total_seconds(), length=float(tick)
        )
        result.buckets.append(bucket)
        if cached is None:
            todo.append(bucket)
    return result, todo


def _count(session: Session, buckets: list[Bucket], tick: int) -> None:
    """One small count per bar: each walks only its slice of the end-time index."""
    for bucket in buckets:
        end = bucket.start + timedelta(seconds=tick)
        bucket.done = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.grading_end_time >= bucket.start, Job.grading_end_time < end)
        )


def _count_failures(session: Session, buckets: list[Bucket], tick: int) -> None:
    """Failed attempts and given-up jobs per bar: small walks of the (kind, time) index."""
    for bucket in buckets:
        end = bucket.start + timedelta(seconds=tick)
        in_bar = (Event.time >= bucket.start, Event.time < end)
        counts = dict(
            session.execute(
                select(Event.kind, func.count())
                .where(Event.kind.in_(FAILED_ATTEMPT + GAVE_UP), *in_bar)
                .group_by(Event.kind)
            ).all()
        )
        bucket.failed_attempts = sum(counts.get(kind, 0) for kind in FAILED_ATTEMPT)
        bucket.gave_up = sum(counts.get(kind, 0) for kind in GAVE_UP)


def _sample(session: Session, buckets: list[Bucket], per_bucket: int) -> None:
    """Add the jobs finished in sampled slices of these bars to their sums.

    One query per bar: engines check every OR term on every row they read,
    so one query with the slices of all bars would cost bars-times more.
    """
    for bucket in buckets:
        if not bucket.done:
            continue
        slices = time_slices(
            bucket.start, bucket.seconds, min(1.0, per_bucket / bucket.done), SLICES_PER_BUCKET
        )
        query = (
            select(
                # Durations computed by the database: numbers are much cheaper
                # for the drivers to hand over than timestamps.
                SecondsBetween(Job.received_time, Job.grading_start_time),
                SecondsBetween(Job.grading_start_time, Job.grading_end_time),
                Job.nb_fails,
                Result.cpu_time_ms,
                Result.real_time_ms,
                Result.verdict,
            )
            .outerjoin(Result, Result.job_id == Job.id)
            .where(_in_slices(Job.grading_end_time, slices))
        )
        for row in session.execute(query):
            bucket.add_sampled(*row)
