"""Taking a result back from the server that holds the job."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from graderqueue.delivery import callbacks
from graderqueue.errors import NotAssigned
from graderqueue.protocol.results import result_errorcode
from graderqueue.queue import artifacts, runs_progress, states, stats, verdicts
from graderqueue.store import events
from graderqueue.store.models import (
    Delivery,
    DeliveryState,
    Job,
    JobStatus,
    Platform,
    Result,
    utcnow,
)

JOBS = Job.__table__
RESULTS = Result.__table__
DELIVERIES = Delivery.__table__
PLATFORMS = Platform.__table__
_INSERT_RESULT = insert(RESULTS)
_INSERT_DELIVERY = insert(DELIVERIES)
# Built once with bound parameters (every result runs them).
_HELD = (
    select(
        JOBS.c.jobdata,
        JOBS.c.platform_id,
        JOBS.c.callback_url,
        JOBS.c.run_id,
        JOBS.c.grading_start_time,
    )
    .where(
        JOBS.c.id == bindparam("job_id"),
        JOBS.c.status == JobStatus.SENT,
        JOBS.c.sent_to == bindparam("server_id"),
    )
    .with_for_update()
)
_DONE = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"))
    .values(status=JobStatus.DONE, dedup_key=None, grading_end_time=bindparam("now"),
            lease_expires=None)
)  # fmt: skip
_RETURN_URL = select(PLATFORMS.c.return_url).where(PLATFORMS.c.id == bindparam("platform_id"))


@dataclass(frozen=True)
class Completion:
    job_id: int
    accepted: bool  # False: the result reported an error, the job was requeued
    type_ids: list[int]
    # The same result again from the server that completed the job (its first
    # answer was lost): nothing changed, nothing more to deliver.
    repeated: bool = False
    # A run job's end may start its run's next stage: what to do after commit.
    run_progress: runs_progress.Progress | None = None
    platform_id: int | None = None
    duration_sec: float | None = None  # grading start to end, for a job made done
    callback_owed: bool = False  # its callback URL is owed a post


def complete(
    session: Session,
    server_id: int,
    job_id: int,
    result: dict[str, Any],
    captured: list[artifacts.Captured] | None = None,
) -> Completion:
    """Take a result from the server that holds the job.

    errorcode 0 or 1: the job is done, its statistics and ``captured``
    artifacts saved and, if its platform has a return URL, a delivery is
    owed (same transaction).
    Anything else: the job goes back to the queue with one more failure.
    """
    held = session.execute(_HELD, {"job_id": job_id, "server_id": server_id}).first()
    if held is None:
        if _already_saved(session, server_id, job_id, result):
            return Completion(job_id=job_id, accepted=True, type_ids=[], repeated=True)
        raise NotAssigned()
    type_ids = states.type_ids_of(session, job_id)
    code = result_errorcode(result)
    if code not in (0, 1):
        _reject(session, server_id, job_id, code, result)
        return Completion(
            job_id=job_id, accepted=False, type_ids=type_ids, platform_id=held.platform_id
        )
    now = utcnow()
    _finish(session, job_id, server_id, held.jobdata, result, now)
    artifacts.keep(session, job_id, captured or [])
    if held.platform_id is not None:
        _owe_delivery(session, job_id, held.platform_id, now)
        if held.callback_url:
            callbacks.owe_job(session, job_id, held.platform_id, held.callback_url, now)
    progress = runs_progress.on_job_ended(session, [job_id]) if held.run_id is not None else None
    started = held.grading_start_time
    return Completion(
        job_id=job_id,
        accepted=True,
        type_ids=type_ids,
        run_progress=progress,
        platform_id=held.platform_id,
        # Two nodes' clocks may differ a little: never a negative duration.
        duration_sec=None if started is None else max(0.0, (now - started).total_seconds()),
        callback_owed=held.platform_id is not None and bool(held.callback_url),
    )


def _reject(
    session: Session, server_id: int, job_id: int, code: int | None, result: dict[str, Any]
) -> None:
    """A result that reports an error: back to the queue with one more failure."""
    states.requeue(session, job_id, count_failure=True)
    message = result.get("errormsg")
    events.log_event(
        session,
        events.BAD_RESULT,
        job_id=job_id,
        server_id=server_id,
        message=f"errorcode {code}: {message if isinstance(message, str) else ''}",
    )


def _finish(
    session: Session,
    job_id: int,
    server_id: int,
    jobdata_text: str,
    result: dict[str, Any],
    now: datetime,
) -> None:
    """sent -> done, with the result, its statistics and its verdict."""
    try:
        jobdata = json.loads(jobdata_text)
    except ValueError:
        jobdata = {}
    figures = stats.extract(jobdata, result)
    verdict = verdicts.verdict(result, figures.is_success)
    session.execute(_DONE, {"job_id": job_id, "now": now})
    states.sync_types(session, job_id, JobStatus.DONE)
    session.execute(
        _INSERT_RESULT,
        {
            "job_id": job_id,
            "resultdata": json.dumps(result),
            "verdict": verdict,
            **figures.as_dict(),
        },
    )
    if verdict == verdicts.GRADER_ERROR:
        # Kept as done (the protocol says so) but not a judgement: the event
        # log says so, or it would look like a wrong answer.
        message = result.get("errormsg")
        events.log_event(
            session,
            events.GRADER_ERROR,
            job_id=job_id,
            server_id=server_id,
            message=f"errorcode {result_errorcode(result)}: "
            f"{message if isinstance(message, str) else ''}",
        )


def _owe_delivery(session: Session, job_id: int, platform_id: int, now: datetime) -> None:
    """The outbox row, in the transaction that makes the job done: never a result owed
    without a delivery, if the platform has a return URL."""
    return_url = session.scalar(_RETURN_URL, {"platform_id": platform_id})
    if not return_url:
        return
    session.execute(
        _INSERT_DELIVERY,
        {
            "job_id": job_id,
            "platform_id": platform_id,
            "state": DeliveryState.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "last_error": "",
        },
    )


def _already_saved(session: Session, server_id: int, job_id: int, result: dict[str, Any]) -> bool:
    """Whether this server completed the job with this very result.

    A grading server whose answer to sendresults was lost sends the result
    again; telling it "not assigned" would make it log a refused result for
    a job that is done and delivered.
    """
    r = RESULTS.c
    stored = session.scalar(
        select(r.resultdata)
        .select_from(RESULTS.join(JOBS, JOBS.c.id == r.job_id))
        .where(r.job_id == job_id, JOBS.c.status == JobStatus.DONE, JOBS.c.sent_to == server_id)
    )
    if stored is None:
        return False
    try:
        return json.loads(stored) == result
    except ValueError:
        return False
