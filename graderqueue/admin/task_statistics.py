"""Task statistics: done jobs of a window grouped by task name, task path or language.

Exact, unlike the dashboard's sampled averages: every job of the window is
read, so answers are costly for long windows and the web side caches them
(:func:`answer_ttl`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from graderqueue.admin.durations import SecondsBetween
from graderqueue.admin.verdicts import GRADER_ERROR, PASSED, pass_rate
from graderqueue.admin.windows import Window
from graderqueue.store.db import Database
from graderqueue.store.models import Job, Result, utcnow

GROUPS: dict[str, tuple[str, object]] = {
    "task_name": ("Task name", Result.task_name),
    "task_path": ("Task path", Result.task_path),
    "language": ("Language", Result.language),
}
DEFAULT_GROUP = "task_name"
# The longest an answer is reused (seconds), for the longest windows.
ANSWER_TTL_MAX = 600.0


def group_by_key(key: str | None) -> str:
    """``key`` if it names a grouping, else the default one (an unknown key is no error)."""
    return key if key is not None and key in GROUPS else DEFAULT_GROUP


@dataclass(frozen=True)
class GroupStats:
    """The figures of one group of done jobs (one task, one path or one language)."""

    key: str
    count: int
    success: int
    cpu_avg_ms: float
    real_avg_ms: float
    slowest_success_ms: int
    wait_avg: float
    total_avg: float
    fails: int
    grader_errors: int = 0

    @property
    def judged(self) -> int:
        """Results that judged the submission: grader errors are not failures."""
        return self.count - self.grader_errors

    @property
    def success_rate(self) -> float | None:
        return pass_rate(self.success, self.judged)


@dataclass
class TaskStatistics:
    rows: list[GroupStats]
    truncated: bool  # only the largest groups are in rows
    total: int  # jobs done in the window


def task_statistics(
    session: Session, group: str, start: datetime, end: datetime, *, limit: int = 1000
) -> TaskStatistics:
    """Done jobs with ``start <= grading_end_time < end``, grouped by ``group``.

    Exact: every job of the window is read (a day of a busy queue in a
    fraction of a second, two weeks of a million jobs in seconds), so the
    caller caches the answer. Sampling would be cheaper but tasks come in
    bursts (a contest), which a sample in time would miss or inflate.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}")
    query = _grouped(GROUPS[group][1], start, end)
    raw = session.execute(query).all()
    rows = [
        GroupStats(
            key=str(k or ""),
            count=int(n),
            success=int(s or 0),
            cpu_avg_ms=float(cpu or 0),
            real_avg_ms=float(real or 0),
            slowest_success_ms=int(slow or 0),
            wait_avg=float(wait or 0),
            total_avg=float(total or 0),
            fails=int(fails or 0),
            grader_errors=int(broken or 0),
        )
        for k, n, s, cpu, real, slow, wait, total, fails, broken in raw[:limit]
    ]
    return TaskStatistics(rows=rows, truncated=len(raw) > limit, total=sum(int(r[1]) for r in raw))


def _grouped(column: Any, start: datetime, end: datetime) -> Select[Any]:
    """One row of figures per value of ``column``, largest groups first."""
    # Grouping on an expression keeps the planner from walking the whole
    # results table along its task_name/language index to serve GROUP BY:
    # the window on jobs.grading_end_time must drive the query.
    key = (column + "").label("key")
    count = func.count().label("n")
    return (
        select(
            key,
            count,
            func.sum(case((Result.verdict == PASSED, 1), else_=0)),
            func.avg(Result.cpu_time_ms),
            func.avg(Result.real_time_ms),
            func.max(case((Result.is_success, Result.max_real_time_ms), else_=0)),
            func.avg(SecondsBetween(Job.received_time, Job.grading_start_time)),
            func.avg(SecondsBetween(Job.received_time, Job.grading_end_time)),
            func.sum(Job.nb_fails),
            func.sum(case((Result.verdict == GRADER_ERROR, 1), else_=0)),
        )
        .select_from(Job)
        .join(Result, Result.job_id == Job.id)
        .where(Job.grading_end_time >= start, Job.grading_end_time < end)
        .group_by(key)
        .order_by(count.desc(), key)
    )


@dataclass(frozen=True)
class TimedStatistics:
    """An answer as the statistics page shows it: with its cost and its age."""

    stats: TaskStatistics
    took: float  # seconds spent computing it
    computed_at: datetime


def timed_statistics(db: Database, group: str, window: Window) -> TimedStatistics:
    """The statistics of the window ending now, timed."""
    began = time.perf_counter()
    end = utcnow()
    with db.reading() as session:
        stats = task_statistics(session, group, end - timedelta(seconds=window.seconds), end)
    return TimedStatistics(stats, time.perf_counter() - began, utcnow())


def answer_ttl(window: Window) -> float:
    """How long an answer may be reused: longer for long windows (they cost more and
    change less), from 5 seconds up to :data:`ANSWER_TTL_MAX`."""
    return min(ANSWER_TTL_MAX, max(5.0, window.seconds / 200))
