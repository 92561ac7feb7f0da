"""A run's stage changes, decided in the database, exactly once.

Every place a job ends (``complete`` for a result, ``states.fail_exhausted``
for max fails, ``control`` for a cancel) calls :func:`on_job_ended` in the
transaction that ends it. A run job's end is counted once (``jobs.run_ended``,
set under the job's row lock), and each stage change is a conditional
``UPDATE runs SET state = new WHERE id = ? AND state = old``: of two nodes
ending jobs of one run at the same moment, only one sees its update change a
row, and only that one starts the next stage.

The roster jobs are made when the students stage starts, ``runs_batch`` per
transaction: each batch is claimed by a conditional update of
``roster_created``, so two nodes (or a restart) never make the same jobs
twice. The transaction that starts the stage makes the first batch; the
rest is made after its commit (:func:`continue_runs`, by the request's node
in the background, and by ``graderqueue cron`` for a run a restart left
half made).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from graderqueue.delivery import callbacks
from graderqueue.files import job_files
from graderqueue.protocol.results import result_errorcode
from graderqueue.queue import enqueue, job_view, run_view
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import Job, JobStatus, Result, Run, RunState, utcnow

RUNS = Run.__table__
JOBS = Job.__table__
ENDED = (JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELLED)
LIVE_STATES = (RunState.READY, RunState.PRE, RunState.STUDENTS, RunState.POST)
# Roster jobs made by the transaction that starts the students stage (the
# end of the pre job, in its sendresults): a few, so that it stays short;
# the rest follow a runs_batch (setting) per transaction after its commit.
FIRST_BATCH = 100


@dataclass
class Progress:
    """What a transaction's run changes leave to do after its commit."""

    type_ids: set[int] = field(default_factory=set)  # new jobs: wake these types' servers
    runs_to_fill: set[int] = field(default_factory=set)  # roster jobs still to make

    def __bool__(self) -> bool:
        return bool(self.type_ids or self.runs_to_fill)

    def merge(self, other: Progress) -> None:
        self.type_ids |= other.type_ids
        self.runs_to_fill |= other.runs_to_fill


def on_job_ended(session: Session, job_ids: list[int], batch: int = FIRST_BATCH) -> Progress:
    """Count the ends of these jobs in their runs and move the runs on; the jobs'
    rows are the caller's (locked, just ended). Jobs of no run are ignored."""
    progress = Progress()
    rows = session.execute(
        select(JOBS.c.id, JOBS.c.run_id, JOBS.c.run_role, JOBS.c.status).where(
            JOBS.c.id.in_(job_ids),
            JOBS.c.run_id.is_not(None),
            JOBS.c.run_ended.is_(False),
            JOBS.c.status.in_(ENDED),
        )
    ).all()
    if not rows:
        return progress
    session.execute(
        update(JOBS)
        .where(JOBS.c.id.in_([r.id for r in rows]))
        .values(run_ended=True)
        .execution_options(synchronize_session=False)
    )
    by_run: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_run[row.run_id].append(row)
    # Runs in id order: two transactions lock them in the same order.
    for run_id in sorted(by_run):
        for row in by_run[run_id]:
            if row.run_role == "roster":
                continue
            succeeded = row.status == JobStatus.DONE and _errorcode(session, row.id) == 0
            if row.run_role == "pre":
                progress.merge(_after_pre(session, run_id, succeeded, batch))
            elif row.run_role == "post":
                ended = RunState.FINISHED if succeeded else RunState.FAILED
                _end(session, run_id, RunState.POST, ended)
        roster = sum(1 for r in by_run[run_id] if r.run_role == "roster")
        if roster:
            progress.merge(_roster_ended(session, run_id, roster))
    return progress


def _errorcode(session: Session, job_id: int) -> int | None:
    data = session.scalar(select(Result.resultdata).where(Result.job_id == job_id))
    try:
        return result_errorcode(json.loads(data)) if data else None
    except ValueError:
        return None


def _after_pre(session: Session, run_id: int, succeeded: bool, batch: int) -> Progress:
    if not succeeded:
        _end(session, run_id, RunState.PRE, RunState.FAILED)
        return Progress()
    return start_students(session, run_id, RunState.PRE, batch)


def start_students(session: Session, run_id: int, old: str, batch: int) -> Progress:
    """``old`` -> students stage, with the first batch of roster jobs."""
    if not _move(session, run_id, old, RunState.STUDENTS):
        return Progress()
    return fill_batch(session, run_id, batch)


def _roster_ended(session: Session, run_id: int, count: int) -> Progress:
    """Count roster ends; the one that makes the count whole starts the post stage."""
    session.execute(
        update(RUNS).where(RUNS.c.id == run_id).values(roster_ended=RUNS.c.roster_ended + count)
    )
    run = session.execute(
        select(RUNS.c.state, RUNS.c.roster_ended, RUNS.c.roster_total).where(RUNS.c.id == run_id)
    ).first()
    if run is None or run.state != RunState.STUDENTS or run.roster_ended < run.roster_total:
        return Progress()
    spec = json.loads(session.scalar(select(RUNS.c.spec).where(RUNS.c.id == run_id)))
    if spec.get("post") is None:
        _end(session, run_id, RunState.STUDENTS, RunState.FINISHED)
        return Progress()
    if not _move(session, run_id, RunState.STUDENTS, RunState.POST):
        return Progress()
    jobdata = json.loads(spec["post"]["jobdata"])
    jobdata["run"] = {"id": run_id, "roster": spec["roster"], "outcomes": outcomes(session, run_id)}
    job_id, type_ids = make_job(session, run_id, "post", spec["post"], jobdata)
    session.execute(update(RUNS).where(RUNS.c.id == run_id).values(post_job_id=job_id))
    return Progress(type_ids=set(type_ids))


def outcomes(session: Session, run_id: int) -> list[dict[str, Any]]:
    """Each roster job's outcome, in roster order: what the post job is given."""
    rows = session.execute(
        select(JOBS.c.id, JOBS.c.status, Result.resultdata)
        .outerjoin(Result, Result.job_id == JOBS.c.id)
        .where(JOBS.c.run_id == run_id, JOBS.c.run_role == "roster")
        .order_by(JOBS.c.id)
    ).all()
    found = []
    for index, row in enumerate(rows):
        try:
            code = result_errorcode(json.loads(row.resultdata)) if row.resultdata else None
        except ValueError:
            code = None
        state = job_view.STATE_OF[row.status]
        found.append({"index": index, "job": row.id, "state": state, "errorcode": code})
    return found


def _move(session: Session, run_id: int, old: str, new: str) -> bool:
    """The one stage change: True for the one transaction whose update changed the row."""
    values: dict[str, Any] = {"state": new}
    if new in (RunState.FINISHED, RunState.FAILED):
        values["ended_at"] = utcnow()
    moved = session.execute(
        update(RUNS).where(RUNS.c.id == run_id, RUNS.c.state == old).values(**values)
    )
    if moved.rowcount == 1:
        events.log_event(session, events.RUN_STAGE, message=f"run #{run_id}: {old} -> {new}")
    return moved.rowcount == 1


def _end(session: Session, run_id: int, old: str, new: str) -> None:
    if _move(session, run_id, old, new):
        owe_end_callback(session, run_id)


def owe_end_callback(session: Session, run_id: int) -> None:
    """The run's end to its callback URL, if it has one (once: see the callers)."""
    run = session.execute(
        select(RUNS.c.callback_url, RUNS.c.platform_id).where(RUNS.c.id == run_id)
    ).first()
    if run is None or not run.callback_url or run.platform_id is None:
        return
    body = run_view.status(session, run_id, None)
    callbacks.owe_run(session, run_id, run.platform_id, run.callback_url, body or {})


def fill_batch(session: Session, run_id: int, batch: int) -> Progress:
    """Make the next ``batch`` roster jobs of a run in its students stage.

    The range is claimed by a conditional update of ``roster_created``:
    another node filling the same run at once finds its update changed
    nothing and makes no job.
    """
    run = session.execute(
        select(RUNS.c.state, RUNS.c.roster_created, RUNS.c.roster_total, RUNS.c.spec).where(
            RUNS.c.id == run_id
        )
    ).first()
    if run is None or run.state != RunState.STUDENTS or run.roster_created >= run.roster_total:
        return Progress()
    start, end = run.roster_created, min(run.roster_total, run.roster_created + batch)
    claimed = session.execute(
        update(RUNS)
        .where(
            RUNS.c.id == run_id,
            RUNS.c.state == RunState.STUDENTS,
            RUNS.c.roster_created == start,
        )
        .values(roster_created=end)
    )
    if claimed.rowcount != 1:
        return Progress()
    spec = json.loads(run.spec)
    jobs = spec["jobs"][start:end]
    news = [(_new_job(job), _extra(run_id, "roster", job)) for job in jobs]
    job_ids = enqueue.insert_many(
        session, news, platform_id=jobs[0]["platform_id"], received_via=jobs[0]["received_via"]
    )
    for job_id, job in zip(job_ids, jobs, strict=True):
        _bind_files(session, job_id, job)
    progress = Progress(type_ids={t for new, _extra in news for t in new.type_ids})
    if end < run.roster_total:
        progress.runs_to_fill.add(run_id)
    return progress


def _new_job(job: dict[str, Any], jobdata: dict[str, Any] | None = None) -> enqueue.NewJob:
    return enqueue.NewJob(
        name=job["name"],
        jobdata=job["jobdata"] if jobdata is None else json.dumps(jobdata),
        priority=job["priority"],
        tags=job["tags"],
        type_ids=job["type_ids"],
        jobusertaskid=job["jobusertaskid"],
        taskrevision=job["taskrevision"],
        timeout_sec=job["timeout_sec"],
    )


def _extra(run_id: int, role: str, job: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": run_id, "run_role": role, "callback_url": job["callback_url"]}


def make_job(
    session: Session, run_id: int, role: str, job: dict[str, Any], jobdata: dict[str, Any]
) -> tuple[int, list[int]]:
    """A run's pre or post job, from its stored spec and the jobdata it is given."""
    new = _new_job(job, jobdata)
    (job_id,) = enqueue.insert_many(
        session,
        [(new, _extra(run_id, role, job))],
        platform_id=job["platform_id"],
        received_via=job["received_via"],
    )
    _bind_files(session, job_id, job)
    return job_id, new.type_ids


def _bind_files(session: Session, job_id: int, job: dict[str, Any]) -> None:
    """The lab files the run bound for this job at its submission (runs.py)."""
    if job.get("files"):
        job_files.bind_resolved(session, job_id, job["files"])


def continue_runs(db: Database, run_ids: set[int], batch: int) -> Progress:
    """Make every roster job still missing of these runs, a batch per transaction."""
    done = Progress()
    for run_id in sorted(run_ids):
        while True:
            with db.transaction() as session:
                step = fill_batch(session, run_id, batch)
            done.type_ids |= step.type_ids
            if run_id not in step.runs_to_fill:
                break
    return done


def unfinished(db: Database) -> set[int]:
    """Runs a restart may have left half made (cron finishes them)."""
    with db.reading() as session:
        return set(
            session.scalars(
                select(RUNS.c.id).where(
                    RUNS.c.state == RunState.STUDENTS, RUNS.c.roster_created < RUNS.c.roster_total
                )
            )
        )
