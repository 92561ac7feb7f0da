"""Counts of the jobs not done yet, for the dashboard.

Only live jobs are counted, through the ``(status, ...)`` indexes: the live
queue is small next to the done jobs, so this never scans the jobs table.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.store.models import Job, JobStatus, JobType, ServerType

LIVE_STATUSES = (JobStatus.QUEUED, JobStatus.SENT, JobStatus.ERROR)
# The queued-jobs list also shows held jobs (JSON API): they wait for a release.
LISTED_STATUSES = (*LIVE_STATUSES, JobStatus.HELD)


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
