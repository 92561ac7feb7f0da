"""Jobs carried over from another queue (``graderqueue import-legacy``), in batches.

The one way in for a job that was not submitted here: it keeps its id, its
state and its lease, so it is written as it is rather than through
``enqueue``. Its ``job_types`` rows copy its status and priority, as every
writer of a job keeps them (see :mod:`~graderqueue.queue.states`); a done
job gets its result row and no delivery: its platform had the result from
the old queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from graderqueue.store.models import Job, JobStatus, JobType, Result

JOBS = Job.__table__
#: The states a carried-over job may be in.
CARRIED_STATES = (JobStatus.QUEUED, JobStatus.SENT, JobStatus.ERROR, JobStatus.DONE)


def present_ids(session: Session, low: int, high: int) -> set[int]:
    """Job ids between *low* and *high* already here (a second import skips them)."""
    return set(session.scalars(select(JOBS.c.id).where(JOBS.c.id.between(low, high))))


def insert_jobs(
    session: Session,
    jobs: Sequence[Mapping[str, Any]],
    types: Mapping[int, Iterable[int]] | None = None,
    results: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Write jobs as they are (ids, states, leases), their types and their results.

    ``types`` maps a job id to the server types that may run it; a job with
    none is never handed out. Refuses a state a carried-over job cannot be in.
    """
    if not jobs:
        return
    for job in jobs:
        if job["status"] not in CARRIED_STATES:
            raise ValueError(f"job {job['id']}: state {job['status']!r} cannot be carried over")
    session.execute(insert(JOBS), list(jobs))
    rows = [
        {
            "job_id": job["id"],
            "type_id": type_id,
            "status": job["status"],
            "priority": job["priority"],
            # All ahead of jobs queued here later: they waited in the old queue.
            "vstart": 0,
        }
        for job in jobs
        for type_id in (types or {}).get(job["id"], ())
    ]
    if rows:
        session.execute(insert(JobType.__table__), rows)
    if results:
        session.execute(insert(Result.__table__), list(results))
