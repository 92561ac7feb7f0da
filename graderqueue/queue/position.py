"""Where a queued job stands: how many jobs will be handed out before it, and when.

A job goes to the first server of any of its types that polls; a server
takes its type's best job (highest priority, then oldest). So the jobs
before ours in one type's order are those of higher priority, and those of
the same priority and an earlier place in line (``vstart``, fair share's
order: queue/fair_share.py), then a smaller id; our position is the smallest such count
over our types (the type whose queue reaches us first).

:func:`positions` answers many jobs with a fixed number of queries per
(type, priority) pair, whatever their number: the event streams of a web
worker read every watched job's position in one pass a second.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from graderqueue.store.models import Job, JobStatus, JobType, utcnow

JT = JobType.__table__.c
# Throughput behind the ETA is measured over this window.
ETA_WINDOW_SEC = 300


@dataclass(frozen=True)
class Queued:
    priority: int
    vstart: int  # its place in line within the priority (fair_share.py)
    type_ids: list[int]


def queued_jobs(session: Session, job_ids: list[int]) -> dict[int, Queued]:
    """The queued ones of ``job_ids``, with what orders them."""
    found: dict[int, Queued] = {}
    for job_id, type_id, priority, vstart in session.execute(
        select(JT.job_id, JT.type_id, JT.priority, JT.vstart).where(
            JT.job_id.in_(job_ids), JT.status == JobStatus.QUEUED
        )
    ):
        found.setdefault(job_id, Queued(priority, vstart, [])).type_ids.append(type_id)
    return found


def positions(session: Session, jobs: dict[int, Queued]) -> dict[int, int]:
    """Positions of queued jobs given as :func:`queued_jobs` returns them."""
    groups: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for job_id, job in jobs.items():
        for type_id in job.type_ids:
            groups[(type_id, job.priority)].append((job.vstart, job_id))
    above = {
        type_id: _higher_priority_counts(session, type_id) for type_id in {t for t, _ in groups}
    }
    best: dict[int, int] = {}
    for (type_id, priority), ids in groups.items():
        higher = sum(n for p, n in above[type_id].items() if p > priority)
        for job_id, same in _same_priority_before(session, type_id, priority, ids).items():
            count = higher + same
            best[job_id] = min(best.get(job_id, count), count)
    return best


def _higher_priority_counts(session: Session, type_id: int) -> dict[int, int]:
    return dict(
        session.execute(
            select(JT.priority, func.count())
            .where(JT.type_id == type_id, JT.status == JobStatus.QUEUED)
            .group_by(JT.priority)
        ).all()
    )


def _before(key: tuple[int, int]) -> Any:
    """Queued rows ahead of (vstart, job id) in the claim's order."""
    vstart, job_id = key
    return (JT.vstart < vstart) | ((JT.vstart == vstart) & (JT.job_id < job_id))


def _same_priority_before(
    session: Session, type_id: int, priority: int, keys: list[tuple[int, int]]
) -> dict[int, int]:
    """For each job, the queued jobs of its type and priority ahead of it.

    One scan up to the last job: each queued row falls in the bucket of the
    first watched job behind it, and running sums give every job's count.
    """
    ordered = sorted(set(keys))
    bucket = case(*[(_before(key), i) for i, key in enumerate(ordered)], else_=len(ordered))
    counts = dict(
        session.execute(
            select(bucket, func.count())
            .where(
                JT.type_id == type_id,
                JT.status == JobStatus.QUEUED,
                JT.priority == priority,
                JT.vstart <= ordered[-1][0],
            )
            .group_by(bucket)
        ).all()
    )
    result, running = {}, 0
    for i, (_vstart, job_id) in enumerate(ordered):
        running += counts.get(i, 0)
        result[job_id] = running
    return result


def throughput_per_sec(session: Session, type_ids: list[int]) -> float:
    """Jobs of these types finished per second over the last few minutes."""
    since = utcnow() - timedelta(seconds=ETA_WINDOW_SEC)
    finished = session.scalar(
        select(func.count(func.distinct(Job.id)))
        .select_from(Job)
        .join(JobType, JobType.job_id == Job.id)
        .where(
            Job.status == JobStatus.DONE,
            Job.grading_end_time >= since,
            JobType.type_id.in_(type_ids),
        )
    )
    return finished / ETA_WINDOW_SEC


def position_only(session: Session, job_id: int) -> int | None:
    """The job's position (None unless queued), without the ETA's throughput query."""
    queued = queued_jobs(session, [job_id])
    return positions(session, queued).get(job_id) if job_id in queued else None


def of_job(session: Session, job_id: int) -> dict[str, Any]:
    """``position``, ``eta_sec`` and ``throughput_per_minute`` of one job (None unless queued)."""
    queued = queued_jobs(session, [job_id])
    if job_id not in queued:
        return {"position": None, "eta_sec": None, "throughput_per_minute": None}
    position = positions(session, queued)[job_id]
    rate = throughput_per_sec(session, queued[job_id].type_ids)
    return {
        "position": position,
        # The job itself must be handed out too: position + 1 jobs to go.
        "eta_sec": round((position + 1) / rate, 1) if rate > 0 else None,
        "throughput_per_minute": round(rate * 60, 2),
    }
