"""What a counted event needs to know of its job, read after the event's commit.

The queue's functions answer with what their callers need (``Claimed`` has
no arrival time, ``Completion`` no platform); rather than widen them for
metrics, these primary-key reads fetch the rest once the work is committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.store.models import Handout, Job, Platform, Server, ServerType

JOBS = Job.__table__
PLATFORMS = Platform.__table__
SERVERS = Server.__table__
TYPES = ServerType.__table__
HANDOUTS = Handout.__table__


@dataclass(frozen=True)
class HandedOut:
    type_name: str  # the type of the server that took it
    platform: str  # "" for a job sent without a platform
    # Arrival to hand-out, for a job's first hand-out only (None for the others:
    # a requeued job's arrival says nothing of how fast dispatch was).
    waited_sec: float | None


@dataclass(frozen=True)
class Finished:
    type_name: str
    platform: str
    # Grading start to end, for a result that made the job done.
    duration_sec: float | None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    # Two nodes' clocks may differ a little: never a negative duration.
    return max(0.0, (end - start).total_seconds())


def handed_out(session: Session, job_id: int) -> HandedOut | None:
    """The job just claimed: its server's type, its platform, how long it waited."""
    j = JOBS.c
    handouts = (
        select(func.count())
        .select_from(HANDOUTS)
        .where(HANDOUTS.c.job_id == job_id)
        .scalar_subquery()
    )
    row = session.execute(
        select(j.received_time, j.grading_start_time, PLATFORMS.c.name, TYPES.c.name, handouts)
        .select_from(
            JOBS.outerjoin(PLATFORMS, PLATFORMS.c.id == j.platform_id)
            .outerjoin(SERVERS, SERVERS.c.id == j.sent_to)
            .outerjoin(TYPES, TYPES.c.id == SERVERS.c.type_id)
        )
        .where(j.id == job_id)
    ).first()
    if row is None:
        return None
    received, started, platform, type_name, count = row
    waited = _seconds(received, started) if count == 1 else None
    return HandedOut(type_name or "", platform or "", waited)


def finished(session: Session, job_id: int, type_id: int, accepted: bool) -> Finished | None:
    """The job a result was just stored for (``accepted``) or refused for."""
    j = JOBS.c
    type_name = select(TYPES.c.name).where(TYPES.c.id == type_id).scalar_subquery()
    row = session.execute(
        select(j.grading_start_time, j.grading_end_time, PLATFORMS.c.name, type_name)
        .select_from(JOBS.outerjoin(PLATFORMS, PLATFORMS.c.id == j.platform_id))
        .where(j.id == job_id)
    ).first()
    if row is None:
        return None
    started, ended, platform, name = row
    duration = _seconds(started, ended) if accepted else None
    return Finished(name or "", platform or "", duration)


def platforms_of(session: Session, job_ids: Sequence[int]) -> Counter[str]:
    """How many of these jobs each platform sent ("" for jobs without a platform)."""
    found: Counter[str] = Counter()
    for start in range(0, len(job_ids), 500):
        rows = session.execute(
            select(PLATFORMS.c.name, func.count())
            .select_from(JOBS.outerjoin(PLATFORMS, PLATFORMS.c.id == JOBS.c.platform_id))
            .where(JOBS.c.id.in_(list(job_ids[start : start + 500])))
            .group_by(PLATFORMS.c.name)
        )
        for name, count in rows:
            found[name or ""] += count
    return found
