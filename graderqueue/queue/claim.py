"""Handing a job to a grading server: exactly one server, best job first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from graderqueue.errors import TooManyJobs
from graderqueue.queue import states
from graderqueue.store import events
from graderqueue.store.models import (
    Handout,
    Job,
    JobFile,
    JobOutput,
    JobStatus,
    JobType,
    QueueFlag,
    Server,
    ServerType,
    utcnow,
)

JOBS = Job.__table__
JOB_TYPES = JobType.__table__
SERVERS = Server.__table__
TYPES = ServerType.__table__
FLAGS = QueueFlag.__table__
# The queue_flags row of `graderqueue pause` (all types).
PAUSED = "paused"
HANDOUTS = Handout.__table__
_INSERT_HANDOUT = insert(HANDOUTS)
# What the poll answer, the metrics and the job's files need of the job just
# claimed, in the claim's transaction: built once (a statement built per call
# costs more CPU than SQLite takes to run it).
_CLAIMED = select(
    JOBS.c.name,
    JOBS.c.taskrevision,
    JOBS.c.jobdata,
    JOBS.c.platform_id,
    JOBS.c.received_time,
    select(func.count())
    .select_from(HANDOUTS)
    .where(HANDOUTS.c.job_id == JOBS.c.id)
    .scalar_subquery(),
    exists().where(JobFile.__table__.c.job_id == JOBS.c.id)
    | exists().where(JobOutput.__table__.c.job_id == JOBS.c.id),
).where(JOBS.c.id == bindparam("job_id"))


@dataclass(frozen=True)
class Claimed:
    id: int
    name: str
    taskrevision: str
    jobdata: str
    type_id: int = 0  # the claiming server's type
    platform_id: int | None = None
    # Arrival to hand-out, for the job's first hand-out only (a requeued
    # job's arrival says nothing of how fast dispatch was).
    waited_sec: float | None = None
    has_files: bool = False  # files or an output file: the poll answer has more fields


# The statements of a claim are built once, with bound parameters: building
# and keying a statement per call cost more CPU than SQLite takes to run it.
_HELD_COUNT = (
    select(func.count())
    .select_from(JOBS)
    .where(
        JOBS.c.sent_to == bindparam("server_id"),
        JOBS.c.status == JobStatus.SENT,
        JOBS.c.lease_expires > bindparam("now"),
    )
)
_RECORD_POLL = (
    update(SERVERS)
    .where(SERVERS.c.id == bindparam("server_id"))
    .values(last_poll_time=bindparam("now"), wakeup_fails=0)
)


def held_count(session: Session, server_id: int, now: datetime | None = None) -> int:
    """Jobs the server really holds: sent to it, lease still running."""
    return session.scalar(_HELD_COUNT, {"server_id": server_id, "now": now or utcnow()})


def record_poll(session: Session, server_id: int, now: datetime) -> None:
    """A poll shows the server is alive and listening: its wake-up failures are forgotten."""
    session.execute(_RECORD_POLL, {"server_id": server_id, "now": now})


def _candidate_queries() -> tuple[Any, Any]:
    j, t = JOBS.c, JOB_TYPES.c
    queued_q = (
        select(t.job_id, t.priority, j.timeout_sec, j.sent_to)
        .select_from(JOB_TYPES.join(JOBS, j.id == t.job_id))
        .where(
            t.type_id == bindparam("type_id"),
            t.status == JobStatus.QUEUED,
            j.nb_fails < bindparam("max_fails"),
        )
        .order_by(t.priority.desc(), t.vstart, t.job_id)
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
            j.lease_expires <= bindparam("now"),
            # A holder that is gone (NULL: a job carried over from the PHP
            # queue whose server was deleted there) is no one to spare.
            or_(j.sent_to.is_(None), j.sent_to != bindparam("server_id")),
            j.nb_fails < bindparam("max_fails"),
            exists().where(t.job_id == j.id, t.type_id == bindparam("type_id")),
        )
        .order_by(j.priority.desc(), j.id)
        .limit(1)
    )
    return queued_q, expired_q


_QUEUED_Q, _EXPIRED_Q = _candidate_queries()
# MariaDB: SKIP LOCKED keeps concurrent claimers off each other's rows.
_QUEUED_Q_LOCKING = _QUEUED_Q.with_for_update(skip_locked=True)
_EXPIRED_Q_LOCKING = _EXPIRED_Q.with_for_update(skip_locked=True)


def claim_queries(server_id: int, type_id: int, max_fails: int, now: datetime) -> tuple[Any, Any]:
    """The two candidate lookups of a claim, with these values (for tests to EXPLAIN).

    The first is served by ``ix_job_types_claim`` in index order: no sort, and
    the same cost with a thousand or a million jobs. The second reads only
    sent jobs whose lease ran out (``ix_jobs_status_lease``), which are few,
    so sorting them costs little.
    Both return (job id, priority, timeout, previous holder).
    """
    values = {"server_id": server_id, "type_id": type_id, "max_fails": max_fails, "now": now}
    return _QUEUED_Q.params(**values), _EXPIRED_Q.params(**values)


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
    now = utcnow()
    if dispatch_stopped(session, server_id):
        return None
    if max_jobs > 0:
        _check_limit(session, server_id, max_jobs, skip_locked, now)
    for _attempt in range(8):
        candidate = _best_candidate(session, server_id, type_id, max_fails, skip_locked, now)
        if candidate is None:
            return None
        if _take(session, server_id, candidate, now):
            row = session.execute(_CLAIMED, {"job_id": candidate.job_id}).one()
            name, taskrevision, jobdata, platform_id, received, handouts, has_files = row
            first = handouts == 1 and received is not None
            # Two nodes' clocks may differ a little: never a negative wait.
            waited = max(0.0, (now - received).total_seconds()) if first else None
            return Claimed(
                candidate.job_id, name, taskrevision, jobdata,
                type_id, platform_id, waited, bool(has_files),
            )  # fmt: skip
        # Someone else got it between our read and our write: look again.
    return None


_STOPPED = (
    select(SERVERS.c.drained, TYPES.c.paused)
    .select_from(SERVERS.join(TYPES, TYPES.c.id == SERVERS.c.type_id))
    .where(SERVERS.c.id == bindparam("server_id"))
)
_PAUSED = select(FLAGS.c.name).where(FLAGS.c.name == PAUSED)
_LOCK_SERVER = select(SERVERS.c.id).where(SERVERS.c.id == bindparam("server_id")).with_for_update()


def dispatch_stopped(session: Session, server_id: int) -> bool:
    """Whether this server gets nothing now: drained, its type paused, or the queue paused.

    Read in every claim's transaction (two primary-key lookups), so a drain
    or a pause holds from the next claim on, on every node.
    """
    stopped = session.execute(_STOPPED, {"server_id": server_id}).first()
    if stopped is None or stopped.drained or stopped.paused:
        return True
    return session.scalar(_PAUSED) is not None


def _check_limit(
    session: Session, server_id: int, max_jobs: int, skip_locked: bool, now: datetime
) -> None:
    if skip_locked:
        # MariaDB: the server's row lock queues this server's claims one
        # behind the other (READ COMMITTED: the count below then sees the
        # claims committed before us). SQLite's BEGIN IMMEDIATE already does.
        session.execute(_LOCK_SERVER, {"server_id": server_id})
    if held_count(session, server_id, now) >= max_jobs:
        raise TooManyJobs()


@dataclass(frozen=True, order=True)
class _Candidate:
    neg_priority: int  # order: highest priority, then lowest id
    job_id: int
    timed_out: bool
    timeout_sec: int
    previous_holder: int | None


def _best_candidate(
    session: Session,
    server_id: int,
    type_id: int,
    max_fails: int,
    skip_locked: bool,
    now: datetime,
) -> _Candidate | None:
    values = {"server_id": server_id, "type_id": type_id, "max_fails": max_fails, "now": now}
    queued_q, expired_q = (
        (_QUEUED_Q_LOCKING, _EXPIRED_Q_LOCKING) if skip_locked else (_QUEUED_Q, _EXPIRED_Q)
    )
    candidates = []
    queued = session.execute(queued_q, values).first()
    if queued is not None:
        candidates.append(_Candidate(-queued[1], queued[0], False, queued[2], None))
    expired = session.execute(expired_q, values).first()
    if expired is not None:
        candidates.append(_Candidate(-expired[1], expired[0], True, expired[2], expired[3]))
    return min(candidates) if candidates else None


def _taking(timed_out: bool) -> Any:
    j = JOBS.c
    guard = (
        (j.status == JobStatus.SENT) & (j.lease_expires <= bindparam("now"))
        if timed_out
        else (j.status == JobStatus.QUEUED)
    )
    values: dict[str, Any] = {
        "status": JobStatus.SENT,
        "sent_to": bindparam("server_id"),
        "grading_start_time": bindparam("now"),
        "lease_expires": bindparam("lease"),
    }
    if timed_out:
        values["nb_fails"] = j.nb_fails + 1
    return update(JOBS).where(j.id == bindparam("job_id"), guard).values(**values)


_TAKE_QUEUED, _TAKE_EXPIRED = _taking(False), _taking(True)


def _take(session: Session, server_id: int, candidate: _Candidate, now: datetime) -> bool:
    """queued -> sent, or sent (lease out) -> sent elsewhere with one more failure.

    Guarded by the state that was read: False if another claim won the job.
    """
    values = {
        "job_id": candidate.job_id,
        "server_id": server_id,
        "now": now,
        "lease": now + timedelta(seconds=candidate.timeout_sec),
    }
    won = session.execute(_TAKE_EXPIRED if candidate.timed_out else _TAKE_QUEUED, values)
    if won.rowcount != 1:
        return False
    states.sync_types(session, candidate.job_id, JobStatus.SENT)
    session.execute(
        _INSERT_HANDOUT, {"job_id": candidate.job_id, "server_id": server_id, "time": now}
    )
    if candidate.timed_out:
        events.log_event(
            session,
            events.TIMEOUT,
            job_id=candidate.job_id,
            server_id=candidate.previous_holder,
            message=f"lease ran out; job re-sent to server {server_id}",
        )
    return True
