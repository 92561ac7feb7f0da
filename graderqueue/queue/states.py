"""The job's state machine: every change of a job's status is a function here or in
:mod:`~graderqueue.queue.enqueue`, :mod:`~graderqueue.queue.claim` and
:mod:`~graderqueue.queue.complete`, and nowhere else.

::

    (new) --enqueue--> queued --claim--> sent --complete(0|1)--> done
                         ^                |
                         +----------------+  complete(other code), lease out, release, requeue
    queued/sent --fail_exhausted--> error --(sent again / requeue)--> queued
    queued --hold--> held --release--> queued
    queued/held/sent/error --cancel--> cancelled
    any --requeue--> queued            (control.py: the JSON API and admin pages)

Each function keeps the ``job_types`` copies of a job's status and priority
in step (they make the claim index-only). Functions take a session inside a
transaction and plain values; they know nothing of HTTP.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from graderqueue.queue import runs_progress
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import Job, JobStatus, JobType, utcnow

# The hot paths (enqueue, claim, complete) run Core statements on the tables,
# not ORM-enabled ones on the classes: the ORM's bookkeeping (autoflush,
# evaluating a bulk UPDATE's WHERE against the session, the unit of work)
# cost several times the SQL itself here. Nothing below keeps ORM objects of
# these rows in the session, so there is nothing for the ORM to synchronize.
JOBS = Job.__table__
JOB_TYPES = JobType.__table__
# Jobs put in error per transaction by fail_exhausted.
FAIL_BATCH = 500

_INSERT_TYPES = insert(JOB_TYPES)


def add_types(
    session: Session, job_id: int, type_ids: list[int], status: str, priority: int, vstart: int
) -> None:
    """A new job's ``job_types`` rows; ``vstart``: its place in line (fair_share.place)."""
    session.execute(
        _INSERT_TYPES,
        [
            {
                "job_id": job_id,
                "type_id": t,
                "status": status,
                "priority": priority,
                "vstart": vstart,
            }
            for t in type_ids
        ],
    )


def set_types(
    session: Session, job_id: int, type_ids: list[int], status: str, priority: int, vstart: int
) -> None:
    """Replace a job's ``job_types`` rows (its tags, hence its types, may have changed)."""
    session.execute(delete(JOB_TYPES).where(JOB_TYPES.c.job_id == job_id))
    add_types(session, job_id, type_ids, status, priority, vstart)


def set_place(session: Session, job_id: int, vstart: int) -> None:
    """A new place in line for a job put back in the queue as if new (a requeue)."""
    session.execute(update(JOB_TYPES).where(JOB_TYPES.c.job_id == job_id).values(vstart=vstart))


# Built once with bound parameters (hot: every claim, result and requeue).
_SYNC_ONE = (
    update(JOB_TYPES)
    .where(JOB_TYPES.c.job_id == bindparam("jid"))
    .values(status=bindparam("new_status"))
)
_SYNC_MANY = (
    update(JOB_TYPES)
    .where(JOB_TYPES.c.job_id.in_(bindparam("jids", expanding=True)))
    .values(status=bindparam("new_status"))
)
_TYPE_IDS = select(JOB_TYPES.c.type_id).where(JOB_TYPES.c.job_id == bindparam("jid"))
_HELD_BY = (
    select(JOBS.c.id)
    .where(JOBS.c.sent_to == bindparam("server_id"), JOBS.c.status == JobStatus.SENT)
    .with_for_update()
)


def sync_types(session: Session, job_ids: int | list[int], status: str) -> None:
    """Copy a status just written to jobs onto their ``job_types`` rows."""
    if isinstance(job_ids, int):
        session.execute(_SYNC_ONE, {"jid": job_ids, "new_status": status})
    elif job_ids:
        session.execute(_SYNC_MANY, {"jids": list(job_ids), "new_status": status})


def sync_priority(session: Session, job_ids: list[int], priority: int) -> None:
    """Copy a priority just written to jobs onto their ``job_types`` rows."""
    session.execute(
        update(JOB_TYPES)
        .where(JOB_TYPES.c.job_id.in_(job_ids))
        .values(priority=priority)
        .execution_options(synchronize_session=False)
    )


def type_ids_of(session: Session, job_id: int) -> list[int]:
    """The server types that can run the job (to wake after a change)."""
    return list(session.scalars(_TYPE_IDS, {"jid": job_id}))


def requeue(session: Session, job_id: int, *, count_failure: bool) -> None:
    """Back to ``queued``, held by nobody; one more failure if ``count_failure``."""
    values: dict[str, Any] = {
        "status": JobStatus.QUEUED,
        "sent_to": None,
        "lease_expires": None,
    }
    if count_failure:
        values["nb_fails"] = JOBS.c.nb_fails + 1
    session.execute(update(JOBS).where(JOBS.c.id == job_id).values(**values))
    sync_types(session, job_id, JobStatus.QUEUED)


def give_back(session: Session, job_id: int, server_id: int) -> bool:
    """A job claimed for a poll whose client left before the answer: back to the
    queue at once, no failure counted, if the server still holds it."""
    back = session.execute(
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.sent_to == server_id, JOBS.c.status == JobStatus.SENT)
        .values(status=JobStatus.QUEUED, sent_to=None, lease_expires=None)
    )
    if back.rowcount != 1:
        return False
    sync_types(session, job_id, JobStatus.QUEUED)
    events.log_event(
        session,
        events.RELEASED,
        job_id=job_id,
        server_id=server_id,
        message="the poll's client left before its answer: back in the queue",
    )
    return True


def release_held(session: Session, server_id: int) -> list[int]:
    """``nbtasks=0``: the server holds nothing, so whatever we think it holds goes back."""
    ids = list(session.scalars(_HELD_BY, {"server_id": server_id}))
    for job_id in ids:
        requeue(session, job_id, count_failure=True)
        events.log_event(
            session,
            events.RELEASED,
            job_id=job_id,
            server_id=server_id,
            message="server polled with nbtasks=0 while holding this job",
        )
    return ids


# -- what maintenance does -------------------------------------------------------


def fail_exhausted(db: Database, max_fails: int) -> int:
    """Jobs no server may take any more become ``error``; returns how many.

    Queued jobs with ``nb_fails`` >= max_fails, as the original; and sent jobs
    in that state whose lease ran out, which no claim would ever pick up
    again and would otherwise stay ``sent`` for ever.
    """
    total = 0
    while True:
        now = utcnow()
        exhausted = and_(
            Job.nb_fails >= max_fails,
            or_(
                Job.status == JobStatus.QUEUED,
                and_(Job.status == JobStatus.SENT, Job.lease_expires <= now),
            ),
        )
        with db.transaction() as session:
            query = select(Job.id, Job.status).where(exhausted).order_by(Job.id).limit(FAIL_BATCH)
            if db.dialect != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
            if not rows:
                return total
            ids = [row.id for row in rows]
            # The guard repeats the condition: a job requeued or claimed since
            # the read (other node, same moment) is left alone.
            session.execute(
                update(Job)
                .where(Job.id.in_(ids), exhausted)
                .values(status=JobStatus.ERROR, lease_expires=None)
                .execution_options(synchronize_session=False)
            )
            errored = list(
                session.scalars(
                    select(Job.id).where(Job.id.in_(ids), Job.status == JobStatus.ERROR)
                )
            )
            sync_types(session, errored, JobStatus.ERROR)
            runs_progress.on_job_ended(session, errored)
            for job_id in errored:
                events.log_event(
                    session,
                    events.JOB_ERROR,
                    job_id=job_id,
                    message=f"failed {max_fails} times or more: no server will get it again",
                )
            total += len(errored)
        if len(rows) < FAIL_BATCH:
            return total
