"""Queueing a job: a new one, or an update of the live job with the same ``jobusertaskid``.

:func:`submit` is the one way in, for the platforms' ``sendjob``, the admin
send form and every later entry point: it routes tags to server types and
retries the one race a unique key can lose.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.protocol.submissions import Submission
from graderqueue.queue import fair_share, routing, states
from graderqueue.registry.view import RegistryView
from graderqueue.store.db import Database
from graderqueue.store.models import Job, JobStatus, utcnow

JOBS = Job.__table__


@dataclass(frozen=True)
class NewJob:
    """What a platform asks to queue, already validated."""

    name: str
    jobdata: str  # JSON text of the job object
    priority: int
    tags: str
    type_ids: list[int]
    jobusertaskid: str
    taskrevision: str
    timeout_sec: int


@dataclass(frozen=True)
class Queued:
    job_ids: list[int]
    type_ids: list[int]  # the server types to wake, after the commit


# One statement for every new job, values bound as parameters: building
# insert().values(...) per call costs more than executing it (a new
# statement, and a cache key over every value).
_INSERT_JOB = insert(JOBS)


# The dedup lookup, built once (every sendjob runs it): the live job with the
# same jobusertaskid from the same sender.
_LIVE_OF_PLATFORM = (
    select(JOBS.c.id, JOBS.c.status)
    .where(JOBS.c.dedup_key == bindparam("key"), JOBS.c.platform_id == bindparam("platform_id"))
    .with_for_update()
)
_LIVE_UNSENT = (
    select(JOBS.c.id, JOBS.c.status)
    .where(
        JOBS.c.dedup_key == bindparam("key"),
        JOBS.c.platform_id.is_(None),
        JOBS.c.received_via == bindparam("via"),
    )
    .with_for_update()
)


def enqueue(
    session: Session,
    new: NewJob,
    *,
    platform_id: int | None,
    received_via: str = "",
) -> tuple[int, bool]:
    """Queue a job, or update the live job with the same ``jobusertaskid``.

    Returns (job id, created). A job in ``error`` keeps its status when sent
    again; any other live job goes back to ``queued`` with its failures reset.
    """
    j = JOBS.c
    if platform_id is None:
        existing = session.execute(
            _LIVE_UNSENT, {"key": new.jobusertaskid, "via": received_via}
        ).first()
    else:
        existing = session.execute(
            _LIVE_OF_PLATFORM, {"key": new.jobusertaskid, "platform_id": platform_id}
        ).first()
    if existing is None:
        fair_share.check_cap(session, platform_id)
    vstart = fair_share.place(session, platform_id, new.type_ids, new.priority)
    fields = {
        "name": new.name,
        "priority": new.priority,
        "tags": new.tags,
        "jobdata": new.jobdata,
        "taskrevision": new.taskrevision,
        "timeout_sec": new.timeout_sec,
    }
    if existing is None:
        job_id = insert_new(
            session, new, platform_id=platform_id, received_via=received_via, vstart=vstart
        )
        return job_id, True

    status = existing.status if existing.status == JobStatus.ERROR else JobStatus.QUEUED
    values: dict[str, Any] = {**fields, "job_repeats": j.job_repeats + 1, "nb_fails": 0}
    if status == JobStatus.QUEUED:
        values.update(status=JobStatus.QUEUED, sent_to=None, lease_expires=None)
    session.execute(update(JOBS).where(j.id == existing.id).values(**values))
    states.set_types(session, existing.id, new.type_ids, status, new.priority, vstart)
    return existing.id, False


def insert_new(
    session: Session,
    new: NewJob,
    *,
    platform_id: int | None,
    received_via: str,
    vstart: int | None = None,
) -> int:
    """Insert a queued job; ``vstart`` None: its place in line is fair share's now."""
    if vstart is None:
        vstart = fair_share.place(session, platform_id, new.type_ids, new.priority)
    row = job_row(new, platform_id, received_via)
    job_id = session.execute(_INSERT_JOB, row).inserted_primary_key[0]
    states.add_types(session, job_id, new.type_ids, JobStatus.QUEUED, new.priority, vstart)
    return job_id


def job_row(
    new: NewJob,
    platform_id: int | None,
    received_via: str,
    *,
    dedup: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new queued job's ``jobs`` row. ``dedup`` False: it holds no dedup key (a
    run's jobs: one per roster entry, whatever their ``jobusertaskid``);
    ``extra``: more columns."""
    return {
        "platform_id": platform_id,
        "received_via": received_via,
        "jobusertaskid": new.jobusertaskid,
        "dedup_key": new.jobusertaskid if dedup else None,
        "status": JobStatus.QUEUED,
        "received_time": utcnow(),
        "job_repeats": 0,
        "nb_fails": 0,
        "name": new.name,
        "priority": new.priority,
        "tags": new.tags,
        "jobdata": new.jobdata,
        "taskrevision": new.taskrevision,
        "timeout_sec": new.timeout_sec,
        **(extra or {}),
    }


def insert_many(
    session: Session,
    news: list[tuple[NewJob, dict[str, Any]]],
    *,
    platform_id: int | None,
    received_via: str,
) -> list[int]:
    """Queue many jobs that hold no dedup key (a run's), each with its ``extra``
    columns: places in line taken together per (types, priority), as that
    many one-by-one calls of fair_share.place would give, and every
    ``job_types`` row in one statement."""
    places: dict[tuple[tuple[int, ...], int], list[int]] = {}
    for new, _extra in news:
        places.setdefault((tuple(new.type_ids), new.priority), []).append(0)
    for (type_ids, priority), slots in places.items():
        slots[:] = fair_share.place_many(session, platform_id, list(type_ids), priority, len(slots))
        slots.reverse()  # popped from the end, in order
    job_ids: list[int] = []
    types: list[dict[str, Any]] = []
    for new, extra in news:
        row = job_row(new, platform_id, received_via, dedup=False, extra=extra)
        job_id = session.execute(_INSERT_JOB, row).inserted_primary_key[0]
        job_ids.append(job_id)
        vstart = places[(tuple(new.type_ids), new.priority)].pop()
        types += [
            {"job_id": job_id, "type_id": t, "status": JobStatus.QUEUED,
             "priority": new.priority, "vstart": vstart}
            for t in new.type_ids
        ]  # fmt: skip
    if types:
        session.execute(insert(states.JOB_TYPES), types)
    return job_ids


def new_job(
    sub: Submission, view: RegistryView, settings: Settings, forced_tag_id: int | None = None
) -> NewJob:
    """A validated submission, routed: its tags resolved to server types."""
    tags, type_ids = routing.resolve(
        view, sub.tag_names, forced_tag_id=forced_tag_id, default_tags=settings.default_tags
    )
    return NewJob(
        name=sub.name,
        jobdata=json.dumps(sub.job),
        priority=sub.priority,
        tags=tags,
        type_ids=type_ids,
        jobusertaskid=sub.jobusertaskid,
        taskrevision=sub.taskrevision,
        timeout_sec=sub.timeout_sec,
    )


def submit(
    db: Database,
    view: RegistryView,
    settings: Settings,
    subs: Sequence[Submission],
    *,
    platform_id: int | None,
    received_via: str,
    forced_tag_id: int | None = None,
    before: Callable[[Session], None] | None = None,
    after: Callable[[Session, list[int]], None] | None = None,
) -> Queued:
    """Queue submissions in one transaction; ``before(session)`` runs first in it,
    ``after(session, job ids)`` last.

    Two identical requests may race to create the same job: the loser's
    insert breaks the unique dedup key, and its second attempt finds the
    winner's row and updates it, as dedup says.
    """
    for attempt in range(2):
        try:
            with db.transaction() as session:
                if before is not None:
                    before(session)
                job_ids: list[int] = []
                type_ids: dict[int, None] = {}
                for sub in subs:
                    new = new_job(sub, view, settings, forced_tag_id)
                    job_id, _created = enqueue(
                        session, new, platform_id=platform_id, received_via=received_via
                    )
                    job_ids.append(job_id)
                    type_ids.update(dict.fromkeys(new.type_ids))
                if after is not None:
                    after(session, job_ids)
            return Queued(job_ids, list(type_ids))
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")
