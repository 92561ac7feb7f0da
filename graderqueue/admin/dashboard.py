"""Figures for the admin dashboard, servers and statistics pages.

Plain queries over a session, returning plain values. Every query is bounded
by an index: live jobs through ``(status, ...)`` indexes (the live queue is
small next to the done jobs), done jobs through ``jobs.grading_end_time``
within a chosen time window. Nothing here counts or scans the whole jobs
table.

Charts over long windows would still read hundreds of thousands of rows, so
their averages come from a sample of short time slices spread through each
bar (counts stay exact), and bars that are over are remembered in a
:class:`BucketCache`: a dashboard costs the full price once per hour, then
only its current bar.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, case, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import FunctionElement

from graderqueue.config import Settings
from graderqueue.store.models import (
    Job,
    JobStatus,
    JobType,
    Result,
    Server,
    ServerToken,
    ServerType,
    Tag,
    TypeTag,
    utcnow,
)

LIVE_STATUSES = (JobStatus.QUEUED, JobStatus.SENT, JobStatus.ERROR)
EPOCH = datetime(1970, 1, 1)

# About this many rows are read to compute a window's averages, shared
# evenly between its bars (so the running bar alone costs little).
SAMPLE_ROWS = 10_000
# Time slices sampled per chart bar. Jobs finished close in time were also
# received close in time, so their rows share database pages: a slice costs
# a few page reads, where as many scattered rows would cost one each.
SLICES_PER_BUCKET = 6
# A bar is final once this long over: results arriving late (clock skew
# between nodes, a commit in flight) still land in it before it is cached.
BUCKET_SETTLE = timedelta(minutes=2)


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    seconds: int
    tick: int  # seconds per chart bar

    @property
    def buckets(self) -> int:
        return self.seconds // self.tick

    @property
    def tick_label(self) -> str:
        hours, minutes = divmod(self.tick // 60, 60)
        if hours:
            return f"{hours} hour{'s' if hours > 1 else ''}"
        return f"{minutes} minute{'s' if minutes > 1 else ''}"


# The original panel's statistics intervals, with ticks giving 15-48 bars.
WINDOWS: tuple[Window, ...] = (
    Window("15m", "15 minutes", 15 * 60, 60),
    Window("1h", "1 hour", 3600, 2 * 60),
    Window("3h", "3 hours", 3 * 3600, 5 * 60),
    Window("12h", "12 hours", 12 * 3600, 20 * 60),
    Window("1d", "1 day", 86400, 30 * 60),
    Window("1w", "1 week", 7 * 86400, 4 * 3600),
    Window("2w", "2 weeks", 14 * 86400, 8 * 3600),
)


def window_by_key(key: str | None, default: str = "1h") -> Window:
    for window in WINDOWS:
        if window.key == key:
            return window
    return window_by_key(default)


class SecondsBetween(FunctionElement):
    """Seconds from the first timestamp to the second, as a float, on every dialect."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(SecondsBetween)
def _seconds_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(SecondsBetween, "mysql")
@compiles(SecondsBetween, "mariadb")
def _seconds_mysql(element, compiler, **kw):  # type: ignore[no-untyped-def]
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"(TIMESTAMPDIFF(MICROSECOND, {start}, {end}) / 1000000.0)"


# -- the live queue ------------------------------------------------------------


def live_counts(session: Session) -> dict[str, int]:
    """Jobs not done yet, by status (served by the (status, received_time) index)."""
    rows = session.execute(
        select(Job.status, func.count()).where(Job.status.in_(LIVE_STATUSES)).group_by(Job.status)
    ).all()
    counts = {str(status): 0 for status in LIVE_STATUSES}
    counts.update({str(status): n for status, n in rows})
    return counts


@dataclass(frozen=True)
class TypeCount:
    type_id: int
    name: str
    queued: int = 0
    sent: int = 0
    error: int = 0


def counts_by_type(session: Session) -> list[TypeCount]:
    """Live jobs per server type they may run on (a job counts for each of its types)."""
    types = session.execute(select(ServerType.id, ServerType.name).order_by(ServerType.id)).all()
    if not types:
        return []
    # Naming every type lets the claim index (type_id, status, ...) serve the count.
    rows = session.execute(
        select(JobType.type_id, JobType.status, func.count())
        .where(JobType.type_id.in_([t.id for t in types]), JobType.status.in_(LIVE_STATUSES))
        .group_by(JobType.type_id, JobType.status)
    ).all()
    by_type: dict[int, dict[str, int]] = {}
    for type_id, status, n in rows:
        by_type.setdefault(type_id, {})[str(status)] = n
    return [TypeCount(t.id, t.name, **by_type.get(t.id, {})) for t in types]


# -- servers -------------------------------------------------------------------

BUSY, POLLING, ASLEEP, UNREACHABLE = "busy", "polling", "asleep", "unreachable"


@dataclass(frozen=True)
class ServerView:
    id: int
    name: str
    type_name: str
    tags: list[str]
    state: str
    held: int
    max_jobs: int
    last_poll: datetime | None
    wakeup_url: str
    wakeup_fails: int
    last_wakeup: datetime | None
    registered_by: str  # "certificate" or "token <name>"
    ip: str


def server_state(held: int, last_poll: datetime | None, wakeup_fails: int, recent: datetime) -> str:
    """Busy if it holds jobs; polling if it asked for work lately; else asleep or unreachable."""
    if held > 0:
        return BUSY
    if last_poll is not None and last_poll >= recent:
        return POLLING
    return UNREACHABLE if wakeup_fails > 0 else ASLEEP


def servers(session: Session, settings: Settings, now: datetime | None = None) -> list[ServerView]:
    now = now or utcnow()
    recent = now - timedelta(seconds=max(settings.wakeup_recent_sec, settings.poll_wait_sec + 5))
    held = dict(
        session.execute(
            select(Job.sent_to, func.count())
            .where(Job.status == JobStatus.SENT)
            .group_by(Job.sent_to)
        ).all()
    )
    type_names = dict(session.execute(select(ServerType.id, ServerType.name)).all())
    tags: dict[int, list[str]] = {}
    for type_id, tag in session.execute(
        select(TypeTag.type_id, Tag.name).join(Tag, Tag.id == TypeTag.tag_id).order_by(Tag.name)
    ):
        tags.setdefault(type_id, []).append(tag)
    token_names = dict(session.execute(select(ServerToken.id, ServerToken.name)).all())
    views = []
    for server in session.scalars(select(Server).order_by(Server.name)):
        count = held.get(server.id, 0)
        views.append(
            ServerView(
                id=server.id,
                name=server.name,
                type_name=type_names.get(server.type_id, f"#{server.type_id}"),
                tags=tags.get(server.type_id, []),
                state=server_state(count, server.last_poll_time, server.wakeup_fails, recent),
                held=count,
                max_jobs=server.max_concurrent_jobs,
                last_poll=server.last_poll_time,
                wakeup_url=server.wakeup_url,
                wakeup_fails=server.wakeup_fails,
                last_wakeup=server.last_wakeup_time,
                registered_by=(
                    f"token {token_names.get(server.token_id, server.token_id)}"
                    if server.token_id is not None
                    else "certificate"
                ),
                ip=server.ip,
            )
        )
    return views


def server_summary(views: list[ServerView]) -> dict[str, int]:
    summary = dict.fromkeys((BUSY, POLLING, ASLEEP, UNREACHABLE), 0)
    for view in views:
        summary[view.state] += 1
    return summary


# -- activity over a window (dashboard charts) ------------------------------------


@dataclass
class Bucket:
    start: datetime
    seconds: float  # elapsed part of the bucket (the last one is still running)
    length: float  # the bucket's full length
    done: int = 0
    sampled: int = 0
    fails: float = 0.0
    wait_sum: float = 0.0
    wait_max: float = 0.0
    grading_sum: float = 0.0
    cpu_ms: float = 0.0
    real_ms: float = 0.0
    success: int = 0

    @property
    def scale(self) -> float:
        """Sampled sums times this estimate the bucket's sums."""
        return self.done / self.sampled if self.sampled else 0.0

    @property
    def per_minute(self) -> float:
        # Over the whole bar, so the running bar fills up instead of jumping
        # to a high rate after its first job.
        return self.done * 60.0 / self.length

    @property
    def wait_avg(self) -> float:
        return self.wait_sum / self.sampled if self.sampled else 0.0

    @property
    def grading_avg(self) -> float:
        return self.grading_sum / self.sampled if self.sampled else 0.0

    @property
    def busy_servers(self) -> float:
        """Average number of jobs being graded at once (grading time per elapsed time)."""
        return self.grading_sum * self.scale / self.seconds if self.seconds > 0 else 0.0

    @property
    def queue_length(self) -> float:
        """Average number of jobs waiting, counted by when they finished."""
        return self.wait_sum * self.scale / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu_ms * self.scale / 1000.0 * 60.0 / self.length

    @property
    def real_per_minute(self) -> float:
        return self.real_ms * self.scale / 1000.0 * 60.0 / self.length

    @property
    def failures(self) -> float:
        return self.fails * self.scale

    @property
    def success_rate(self) -> float:
        return self.success / self.sampled if self.sampled else 0.0


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
    def success_rate(self) -> float | None:
        return self._weighted("success_rate") if self.sampled else None


class BucketCache:
    """Chart bars that are over, per process: they only change when cron deletes old jobs.

    Entries expire after ``max_age`` seconds so such deletions show up
    eventually. One cache per database (per app), never shared between two.
    """

    def __init__(self, max_age: float = 3600.0, max_entries: int = 4096) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: dict[tuple[int, datetime], tuple[float, Bucket]] = {}
        self._lock = threading.Lock()

    def get(self, tick: int, start: datetime) -> Bucket | None:
        with self._lock:
            entry = self._entries.get((tick, start))
        if entry is None or time.monotonic() - entry[0] > self.max_age:
            return None
        return replace(entry[1])

    def put(self, tick: int, bucket: Bucket) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # rare: a long-lived process; simplest bound
            self._entries[(tick, bucket.start)] = (time.monotonic(), replace(bucket))


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

    # One small count per bar: each walks only its slice of the end-time index.
    for bucket in todo:
        end = bucket.start + timedelta(seconds=tick)
        bucket.done = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.grading_end_time >= bucket.start, Job.grading_end_time < end)
        )
    _sample(session, todo, SAMPLE_ROWS // window.buckets, tick)
    if cache is not None:
        for bucket in todo:
            if bucket.start + timedelta(seconds=tick) <= now - BUCKET_SETTLE:
                cache.put(tick, bucket)
    return result


def _sample(session: Session, buckets: list[Bucket], per_bucket: int, tick: int) -> None:
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
                Result.is_success,
            )
            .outerjoin(Result, Result.job_id == Job.id)
            .where(_in_slices(Job.grading_end_time, slices))
        )
        for wait, grading, fails, cpu, real, success in session.execute(query):
            bucket.sampled += 1
            bucket.fails += fails or 0
            if wait is not None:
                wait = max(0.0, float(wait))
                bucket.wait_sum += wait
                bucket.wait_max = max(bucket.wait_max, wait)
                bucket.grading_sum += max(0.0, float(grading))
            bucket.cpu_ms += cpu or 0
            bucket.real_ms += real or 0
            bucket.success += 1 if success else 0


# -- task statistics -------------------------------------------------------------

GROUPS: dict[str, tuple[str, object]] = {
    "task_name": ("Task name", Result.task_name),
    "task_path": ("Task path", Result.task_path),
    "language": ("Language", Result.language),
}


@dataclass(frozen=True)
class TaskStat:
    key: str
    count: int
    success: int
    cpu_avg_ms: float
    real_avg_ms: float
    slowest_success_ms: int
    wait_avg: float
    total_avg: float
    fails: int

    @property
    def success_rate(self) -> float:
        return self.success / self.count if self.count else 0.0


@dataclass
class TaskStats:
    rows: list[TaskStat]
    truncated: bool  # only the largest groups are in rows
    total: int  # jobs done in the window


def task_statistics(
    session: Session, group: str, start: datetime, end: datetime, *, limit: int = 1000
) -> TaskStats:
    """Done jobs with ``start <= grading_end_time < end``, grouped by ``group``.

    Exact: every job of the window is read (a day of a busy queue in a
    fraction of a second, two weeks of a million jobs in seconds), so the
    caller caches the answer. Sampling would be cheaper but tasks come in
    bursts (a contest), which a sample in time would miss or inflate.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}")
    column = GROUPS[group][1]
    # Grouping on an expression keeps the planner from walking the whole
    # results table along its task_name/language index to serve GROUP BY:
    # the window on jobs.grading_end_time must drive the query.
    key = (column + "").label("key")  # type: ignore[operator]
    count = func.count().label("n")
    query = (
        select(
            key,
            count,
            func.sum(case((Result.is_success, 1), else_=0)),
            func.avg(Result.cpu_time_ms),
            func.avg(Result.real_time_ms),
            func.max(case((Result.is_success, Result.max_real_time_ms), else_=0)),
            func.avg(SecondsBetween(Job.received_time, Job.grading_start_time)),
            func.avg(SecondsBetween(Job.received_time, Job.grading_end_time)),
            func.sum(Job.nb_fails),
        )
        .select_from(Job)
        .join(Result, Result.job_id == Job.id)
        .where(Job.grading_end_time >= start, Job.grading_end_time < end)
        .group_by(key)
        .order_by(count.desc(), key)
    )
    raw = session.execute(query).all()
    rows = [
        TaskStat(
            key=str(k or ""),
            count=int(n),
            success=int(s or 0),
            cpu_avg_ms=float(cpu or 0),
            real_avg_ms=float(real or 0),
            slowest_success_ms=int(slow or 0),
            wait_avg=float(wait or 0),
            total_avg=float(total or 0),
            fails=int(fails or 0),
        )
        for k, n, s, cpu, real, slow, wait, total, fails in raw[:limit]
    ]
    return TaskStats(rows=rows, truncated=len(raw) > limit, total=sum(int(r[1]) for r in raw))
