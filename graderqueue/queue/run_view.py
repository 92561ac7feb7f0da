"""A run as the JSON API shows it: Broadway's status shape, plus counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.queue import job_view
from graderqueue.store.models import Job, Run

RUNS = Run.__table__
JOBS = Job.__table__


def find(session: Session, run_id: int, platform_id: int | None) -> Any:
    """The run's row if the caller may see it (``platform_id`` None: an operator)."""
    row = session.execute(select(RUNS).where(RUNS.c.id == run_id)).first()
    if row is None or (platform_id is not None and row.platform_id != platform_id):
        return None
    return row


def status(session: Session, run_id: int, platform_id: int | None) -> dict[str, Any] | None:
    """``state``, ``pre_processing_job``, ``post_processing_job`` and ``student_jobs``
    (each ``{job id: job state}``), and ``counts``; None if unknown (or another's)."""
    run = find(session, run_id, platform_id)
    if run is None:
        return None
    jobs: dict[str, dict[str, str]] = {"pre": {}, "roster": {}, "post": {}}
    for job_id, role, job_status in session.execute(
        select(JOBS.c.id, JOBS.c.run_role, JOBS.c.status)
        .where(JOBS.c.run_id == run_id)
        .order_by(JOBS.c.id)
    ):
        jobs[role][str(job_id)] = job_view.STATE_OF[job_status]
    by_state = Counter(jobs["roster"].values())
    return {
        "id": run.id,
        "state": run.state,
        "pre_processing_job": jobs["pre"],
        "post_processing_job": jobs["post"],
        "student_jobs": jobs["roster"],
        "counts": {
            "roster": run.roster_total,
            "created": run.roster_created,
            "ended": run.roster_ended,
            **{state: by_state.get(state, 0) for state in job_view.STATES},
        },
        "created_at": job_view.iso(run.created_at),
        "ended_at": job_view.iso(run.ended_at),
    }


def progress(session: Session, run_ids: list[int]) -> dict[int, tuple[str, int]]:
    """Each run's state and how many roster jobs ended: what event streams follow."""
    return {
        row.id: (row.state, row.roster_ended)
        for row in session.execute(
            select(RUNS.c.id, RUNS.c.state, RUNS.c.roster_ended).where(RUNS.c.id.in_(run_ids))
        )
    }
