"""The life of a job: queue, claim, complete or requeue.

Every change of a job's status goes through this module, which keeps the
``job_types`` copies of status and priority in step (they make the claim
index-only). Functions take a session inside a transaction and plain values;
they know nothing of HTTP.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest, NotAssigned, TooManyJobs
from graderqueue.protocol.numbers import parse_int
from graderqueue.queue import stats
from graderqueue.store import events
from graderqueue.store.models import (
    Delivery,
    DeliveryState,
    Job,
    JobStatus,
    JobType,
    Platform,
    Result,
    Server,
    utcnow,
)

# The hot paths (enqueue, claim, complete) run Core statements on the tables,
# not ORM-enabled ones on the classes: the ORM's bookkeeping (autoflush,
# evaluating a bulk UPDATE's WHERE against the session, the unit of work)
# cost several times the SQL itself here. Nothing below keeps ORM objects of
# these rows in the session, so there is nothing for the ORM to synchronize.
JOBS = Job.__table__
JOB_TYPES = JobType.__table__
RESULTS = Result.__table__
DELIVERIES = Delivery.__table__
PLATFORMS = Platform.__table__
SERVERS = Server.__table__

# The job's fields, as the original's queue table named them (getjob).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
NAME_MAX = 255


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
class Claimed:
    id: int
    name: str
    taskrevision: str
    jobdata: str


@dataclass(frozen=True)
class Completion:
    job_id: int
    accepted: bool  # False: the result reported an error, the job was requeued
    type_ids: list[int]
    # The same result again from the server that completed the job (its first
    # answer was lost): nothing changed, nothing more to deliver.
    repeated: bool = False


def dedup_key_for(request: dict[str, Any]) -> str:
    """A stable id for a request without ``jobusertaskid``: identical requests dedup."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return "auto-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _set_types(session: Session, job_id: int, type_ids: list[int], status: str, priority: int):
    session.execute(delete(JOB_TYPES).where(JOB_TYPES.c.job_id == job_id))
    _add_types(session, job_id, type_ids, status, priority)


_INSERT_TYPES = insert(JOB_TYPES)


def _add_types(session: Session, job_id: int, type_ids: list[int], status: str, priority: int):
    session.execute(
        _INSERT_TYPES,
        [
            {"job_id": job_id, "type_id": t, "status": status, "priority": priority}
            for t in type_ids
        ],
    )


def _sync_types(session: Session, job_id: int, status: str) -> None:
    session.execute(update(JOB_TYPES).where(JOB_TYPES.c.job_id == job_id).values(status=status))


def type_ids_of(session: Session, job_id: int) -> list[int]:
    return list(session.scalars(select(JOB_TYPES.c.type_id).where(JOB_TYPES.c.job_id == job_id)))


# One statement for every new job, values bound as parameters: building
# insert().values(...) per call costs more than executing it (a new
# statement, and a cache key over every value).
_INSERT_JOB = insert(JOBS)


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
    query = select(j.id, j.status).where(j.dedup_key == new.jobusertaskid)
    if platform_id is None:
        query = query.where(j.platform_id.is_(None), j.received_via == received_via)
    else:
        query = query.where(j.platform_id == platform_id)
    existing = session.execute(query.with_for_update()).first()
    fields = {
        "name": new.name,
        "priority": new.priority,
        "tags": new.tags,
        "jobdata": new.jobdata,
        "taskrevision": new.taskrevision,
        "timeout_sec": new.timeout_sec,
    }
    if existing is None:
        job_id = session.execute(
            _INSERT_JOB,
            {
                "platform_id": platform_id,
                "received_via": received_via,
                "jobusertaskid": new.jobusertaskid,
                "dedup_key": new.jobusertaskid,
                "status": JobStatus.QUEUED,
                "received_time": utcnow(),
                "job_repeats": 0,
                "nb_fails": 0,
                **fields,
            },
        ).inserted_primary_key[0]
        _add_types(session, job_id, new.type_ids, JobStatus.QUEUED, new.priority)
        return job_id, True

    status = existing.status if existing.status == JobStatus.ERROR else JobStatus.QUEUED
    values: dict[str, Any] = {**fields, "job_repeats": j.job_repeats + 1, "nb_fails": 0}
    if status == JobStatus.QUEUED:
        values.update(status=JobStatus.QUEUED, sent_to=None, lease_expires=None)
    session.execute(update(JOBS).where(j.id == existing.id).values(**values))
    _set_types(session, existing.id, new.type_ids, status, new.priority)
    return existing.id, False


def held_count(session: Session, server_id: int, now: datetime | None = None) -> int:
    """Jobs the server really holds: sent to it, lease still running."""
    now = now or utcnow()
    return session.scalar(
        select(func.count())
        .select_from(JOBS)
        .where(
            JOBS.c.sent_to == server_id,
            JOBS.c.status == JobStatus.SENT,
            JOBS.c.lease_expires > now,
        )
    )


def record_poll(session: Session, server_id: int, now: datetime) -> None:
    """A poll shows the server is alive and listening: its wake-up failures are forgotten."""
    servers = Server.__table__
    session.execute(
        update(servers).where(servers.c.id == server_id).values(last_poll_time=now, wakeup_fails=0)
    )


def release_held(session: Session, server_id: int) -> list[int]:
    """``nbtasks=0``: the server holds nothing, so whatever we think it holds goes back."""
    ids = list(
        session.scalars(
            select(JOBS.c.id)
            .where(JOBS.c.sent_to == server_id, JOBS.c.status == JobStatus.SENT)
            .with_for_update()
        )
    )
    for job_id in ids:
        _requeue(session, job_id, count_failure=True)
        events.log_event(
            session,
            events.RELEASED,
            job_id=job_id,
            server_id=server_id,
            message="server polled with nbtasks=0 while holding this job",
        )
    return ids


def _requeue(session: Session, job_id: int, *, count_failure: bool) -> None:
    values: dict[str, Any] = {
        "status": JobStatus.QUEUED,
        "sent_to": None,
        "lease_expires": None,
    }
    if count_failure:
        values["nb_fails"] = JOBS.c.nb_fails + 1
    session.execute(update(JOBS).where(JOBS.c.id == job_id).values(**values))
    _sync_types(session, job_id, JobStatus.QUEUED)


def claim_queries(server_id: int, type_id: int, max_fails: int, now: datetime) -> tuple[Any, Any]:
    """The two candidate lookups of a claim (kept apart so tests can EXPLAIN them).

    The first is served by ``ix_job_types_claim`` in index order: no sort, and
    the same cost with a thousand or a million jobs. The second reads only
    sent jobs whose lease ran out (``ix_jobs_status_lease``), which are few,
    so sorting them costs little.
    Both return (job id, priority, timeout, previous holder).
    """
    j, t = JOBS.c, JOB_TYPES.c
    queued_q = (
        select(t.job_id, t.priority, j.timeout_sec, j.sent_to)
        .select_from(JOB_TYPES.join(JOBS, j.id == t.job_id))
        .where(t.type_id == type_id, t.status == JobStatus.QUEUED, j.nb_fails < max_fails)
        .order_by(t.priority.desc(), t.job_id)
        .limit(1)
    )
    # EXISTS, not a join: the planner then has no way to drive this lookup
    # from job_types (every job of the type, then a sort), which SQLite chose
    # once ANALYZE had seen a table of queued jobs: 3 ms -> 84 ms a claim at
    # a million jobs.
    expired_q = (
        select(j.id, j.priority, j.timeout_sec, j.sent_to)
        .where(
            j.status == JobStatus.SENT,
            j.lease_expires <= now,
            j.sent_to != server_id,
            j.nb_fails < max_fails,
            exists().where(t.job_id == j.id, t.type_id == type_id),
        )
        .order_by(j.priority.desc(), j.id)
        .limit(1)
    )
    return queued_q, expired_q


def claim(
    session: Session,
    server_id: int,
    type_id: int,
    *,
    max_fails: int,
    skip_locked: bool,
    max_jobs: int = 0,
) -> Claimed | None:
    """Hand the best eligible job to the server: highest priority, then oldest.

    Eligible: one of the job's types is the server's, fewer than ``max_fails``
    failures, and either queued, or sent elsewhere with its lease run out
    (never back to the server it timed out on, as the original). Exclusive:
    the final UPDATE only succeeds if the job is still in the state we read,
    so two servers can never both get it; on MariaDB ``SKIP LOCKED`` keeps
    concurrent claimers off each other's rows.

    ``max_jobs`` (0: no limit) is checked in the same transaction, so several
    polls of one server at once, on any threads, processes or nodes, never
    get more than that many jobs between them: raises :class:`TooManyJobs`.
    """
    j = JOBS.c
    now = utcnow()
    if max_jobs > 0:
        if skip_locked:
            # MariaDB: the server's row lock queues this server's claims one
            # behind the other (READ COMMITTED: the count below then sees the
            # claims committed before us). SQLite's BEGIN IMMEDIATE already does.
            session.execute(select(SERVERS.c.id).where(SERVERS.c.id == server_id).with_for_update())
        if held_count(session, server_id, now) >= max_jobs:
            raise TooManyJobs()
    for _attempt in range(8):
        queued_q, expired_q = claim_queries(server_id, type_id, max_fails, now)
        if skip_locked:
            queued_q = queued_q.with_for_update(skip_locked=True)
            expired_q = expired_q.with_for_update(skip_locked=True)
        candidates = []
        queued = session.execute(queued_q).first()
        if queued is not None:
            candidates.append((-queued[1], queued[0], False, queued[2], None))
        expired = session.execute(expired_q).first()
        if expired is not None:
            candidates.append((-expired[1], expired[0], True, expired[2], expired[3]))
        if not candidates:
            return None
        _, job_id, timed_out, timeout_sec, previous = min(candidates)

        guard = (
            (j.status == JobStatus.SENT) & (j.lease_expires <= now)
            if timed_out
            else (j.status == JobStatus.QUEUED)
        )
        values: dict[str, Any] = {
            "status": JobStatus.SENT,
            "sent_to": server_id,
            "grading_start_time": now,
            "lease_expires": now + timedelta(seconds=timeout_sec),
        }
        if timed_out:
            values["nb_fails"] = j.nb_fails + 1
        won = session.execute(update(JOBS).where(j.id == job_id, guard).values(**values))
        if won.rowcount != 1:
            continue  # someone else got it between our read and our write
        _sync_types(session, job_id, JobStatus.SENT)
        if timed_out:
            events.log_event(
                session,
                events.TIMEOUT,
                job_id=job_id,
                server_id=previous,
                message=f"lease ran out; job re-sent to server {server_id}",
            )
        name, taskrevision, jobdata = session.execute(
            select(j.name, j.taskrevision, j.jobdata).where(j.id == job_id)
        ).one()
        return Claimed(id=job_id, name=name, taskrevision=taskrevision, jobdata=jobdata)
    return None


def parse_result(raw: str | None) -> dict[str, Any]:
    """Validate ``resultdata`` from a grading server before touching the database."""
    if raw is None or raw == "":
        raise BadRequest("No resultdata received.")
    try:
        result = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"Cannot decode resultdata: {exc.args[0]}") from exc
    except RecursionError as exc:
        raise BadRequest("Cannot decode resultdata: nested too deeply.") from exc
    if not isinstance(result, dict):
        raise BadRequest("Cannot decode resultdata: not a JSON object.")
    return result


def result_errorcode(result: dict[str, Any]) -> int | None:
    code = result.get("errorcode")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str):
        return parse_int(code, signed=True, max_digits=12)
    return None


def complete(session: Session, server_id: int, job_id: int, result: dict[str, Any]) -> Completion:
    """Take a result from the server that holds the job.

    errorcode 0 or 1: the job is done, its statistics saved and, if its
    platform has a return URL, a delivery is owed (same transaction).
    Anything else: the job goes back to the queue with one more failure.
    """
    j = JOBS.c
    held = session.execute(
        select(j.jobdata, j.platform_id)
        .where(j.id == job_id, j.status == JobStatus.SENT, j.sent_to == server_id)
        .with_for_update()
    ).first()
    if held is None:
        if _already_saved(session, server_id, job_id, result):
            return Completion(job_id=job_id, accepted=True, type_ids=[], repeated=True)
        raise NotAssigned()
    type_ids = type_ids_of(session, job_id)
    code = result_errorcode(result)
    if code not in (0, 1):
        _requeue(session, job_id, count_failure=True)
        message = result.get("errormsg")
        events.log_event(
            session,
            events.BAD_RESULT,
            job_id=job_id,
            server_id=server_id,
            message=f"errorcode {code}: {message if isinstance(message, str) else ''}",
        )
        return Completion(job_id=job_id, accepted=False, type_ids=type_ids)

    try:
        jobdata = json.loads(held.jobdata)
    except ValueError:
        jobdata = {}
    figures = stats.extract(jobdata, result)
    now = utcnow()
    session.execute(
        update(JOBS)
        .where(j.id == job_id)
        .values(status=JobStatus.DONE, dedup_key=None, grading_end_time=now, lease_expires=None)
    )
    _sync_types(session, job_id, JobStatus.DONE)
    session.execute(
        _INSERT_RESULT, {"job_id": job_id, "resultdata": json.dumps(result), **figures.as_dict()}
    )
    if held.platform_id is not None:
        return_url = session.scalar(
            select(PLATFORMS.c.return_url).where(PLATFORMS.c.id == held.platform_id)
        )
        if return_url:
            session.execute(
                _INSERT_DELIVERY,
                {
                    "job_id": job_id,
                    "platform_id": held.platform_id,
                    "state": DeliveryState.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "last_error": "",
                },
            )
    return Completion(job_id=job_id, accepted=True, type_ids=type_ids)


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


_INSERT_RESULT = insert(RESULTS)
_INSERT_DELIVERY = insert(DELIVERIES)


def _time(value: datetime | None) -> str | None:
    return value.strftime(TIME_FORMAT) if value is not None else None


def job_row(session: Session, job: Job) -> tuple[str, dict[str, Any]]:
    """A job as ``getjob`` shows it: (origin, row under the original's names)."""
    row: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "jobusertaskid": job.jobusertaskid,
        "job_repeats": job.job_repeats,
        "status": job.status,
        "priority": job.priority,
        "timeout_sec": job.timeout_sec,
        "nb_fails": job.nb_fails,
        "received_from": job.platform_id if job.platform_id is not None else -1,
        "received_time": _time(job.received_time),
        "sent_to": job.sent_to if job.sent_to is not None else -1,
        "grading_start_time": _time(job.grading_start_time),
        "tags": job.tags,
        "taskrevision": job.taskrevision,
        "jobdata": job.jobdata,
    }
    if job.status != JobStatus.DONE:
        return "queue", row
    result = session.get(Result, job.id)
    row["jobid"] = job.id  # the original's done table had its own id and this one
    row["grading_end_time"] = _time(job.grading_end_time)
    if result is not None:
        row["resultdata"] = result.resultdata
        row.update(
            cpu_time_ms=result.cpu_time_ms,
            real_time_ms=result.real_time_ms,
            max_real_time_ms=result.max_real_time_ms,
            is_success=int(result.is_success),
            task_path=result.task_path,
            task_name=result.task_name,
            language=result.language,
        )
    return "done", row


def get_for_platform(session: Session, job_id: int, platform_id: int | None, via: str) -> Job:
    """The job if this sender sent it; foreign and unknown ids look the same."""
    from graderqueue.errors import UnknownJob

    job = session.get(Job, job_id)
    if job is None or job.platform_id != platform_id:
        raise UnknownJob()
    if platform_id is None and job.received_via != via:
        raise UnknownJob()
    return job
