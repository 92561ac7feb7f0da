"""Queued jobs in the order they will be handed out, and the columns of the live list.

The claim (queue/claim.py) takes, for a server of one type, the queued job
first by ``priority DESC, vstart, job_id`` on that type's ``job_types``
rows: the ``ix_job_types_claim`` index in that very order. A page here walks
the same index, for one type or for each type merged (a job routed to two
types appears once, at its earlier place), after a cursor on that key: the
thousandth page costs what the first does, at any number of done jobs.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, defer

from graderqueue.admin.conditions import contains, time_range
from graderqueue.admin.job_lists import NO_PLATFORM, JobFilter
from graderqueue.admin.keyset import DEFAULT_LIMIT
from graderqueue.protocol.numbers import parse_int
from graderqueue.store import events
from graderqueue.store.models import Event, Job, JobStatus, JobType, ServerType


@dataclass(frozen=True, order=True)
class ClaimKey:
    """A place in the claim order: lower comes first."""

    neg_priority: int
    vstart: int
    job_id: int

    def encode(self) -> str:
        return f"{-self.neg_priority}_{self.vstart}_{self.job_id}"

    @classmethod
    def decode(cls, text: str | None) -> ClaimKey | None:
        """The cursor of a URL; anything malformed is the first page."""
        parts = (text or "").split("_")
        if len(parts) != 3:
            return None
        # Priorities and fair-share places may be negative.
        priority, vstart, job_id = (parse_int(p, signed=True) for p in parts)
        if priority is None or vstart is None or job_id is None:
            return None
        return cls(-priority, vstart, job_id)


@dataclass
class ClaimPage:
    rows: list[Job] = field(default_factory=list)
    next: ClaimKey | None = None  # where the next page starts (after this key)


def _after(key: ClaimKey | None) -> list[Any]:
    if key is None:
        return []
    p = -key.neg_priority
    return [
        or_(
            JobType.priority < p,
            and_(
                JobType.priority == p,
                or_(
                    JobType.vstart > key.vstart,
                    and_(JobType.vstart == key.vstart, JobType.job_id > key.job_id),
                ),
            ),
        )
    ]


def _job_conditions(filters: JobFilter) -> list[Any]:
    conditions: list[Any] = list(time_range(Job.received_time, filters.since, filters.until))
    if filters.name:
        conditions.append(contains(Job.name, filters.name))
    if filters.platform_id == NO_PLATFORM:
        conditions.append(Job.platform_id.is_(None))
    elif filters.platform_id is not None:
        conditions.append(Job.platform_id == filters.platform_id)
    if filters.server_id is not None:
        conditions.append(Job.sent_to == filters.server_id)  # a queued job has none: empty
    return conditions


def claim_order_page(
    session: Session,
    filters: JobFilter,
    type_ids: list[int],
    after: ClaimKey | None = None,
    limit: int = DEFAULT_LIMIT,
) -> ClaimPage:
    """Queued jobs of these types, in the order each type's servers will take them.

    With several types, their orders are merged on the claim key, so the
    page reads as "who goes first" across the fleet.
    """
    conditions = _job_conditions(filters)
    keys: dict[int, ClaimKey] = {}
    for type_id in type_ids:
        query = (
            select(JobType.priority, JobType.vstart, JobType.job_id)
            .where(JobType.type_id == type_id, JobType.status == JobStatus.QUEUED, *_after(after))
            .order_by(JobType.priority.desc(), JobType.vstart, JobType.job_id)
            .limit(limit + 1)
        )
        if conditions:
            query = query.join(Job, Job.id == JobType.job_id).where(*conditions)
        for priority, vstart, job_id in session.execute(query):
            key = ClaimKey(-priority, vstart, job_id)
            keys[job_id] = min(key, keys.get(job_id, key))
    ordered = heapq.nsmallest(limit + 1, keys.values())
    shown = ordered[:limit]
    jobs = {
        j.id: j
        for j in session.scalars(
            select(Job).where(Job.id.in_([k.job_id for k in shown])).options(defer(Job.jobdata))
        )
    }
    return ClaimPage(
        rows=[jobs[k.job_id] for k in shown if k.job_id in jobs],
        next=shown[-1] if len(ordered) > limit else None,
    )


def type_ids_by_name(session: Session) -> dict[str, int]:
    """Every server type, by name (the list's type tabs)."""
    rows = session.execute(select(ServerType.name, ServerType.id).order_by(ServerType.name))
    return dict(rows.all())


def type_names_of(session: Session, job_ids: list[int]) -> dict[int, list[str]]:
    """The server types each of these jobs may run on, by name.

    Read on the ``job_types`` primary key alone, names from the small types
    table: joined in SQL, MariaDB may start from a type and walk its claim
    index over every done job.
    """
    if not job_ids:
        return {}
    names = dict(session.execute(select(ServerType.id, ServerType.name)).all())
    found: dict[int, list[str]] = {}
    for job_id, type_id in session.execute(
        select(JobType.job_id, JobType.type_id).where(JobType.job_id.in_(job_ids))
    ):
        found.setdefault(job_id, []).append(names.get(type_id, f"#{type_id}"))
    return {job_id: sorted(types) for job_id, types in found.items()}


def in_error_since(session: Session, job_ids: list[int]) -> dict[int, datetime]:
    """When each of these jobs went to error (its last job_error event; the (job_id) index)."""
    if not job_ids:
        return {}
    return dict(
        session.execute(
            select(Event.job_id, func.max(Event.time))
            .where(Event.job_id.in_(job_ids), Event.kind == events.JOB_ERROR)
            .group_by(Event.job_id)
        ).all()
    )
