"""Jobs as the JSON API shows them: states, summaries, one job with its timeline.

The API's six states name the stored statuses (``models.JobStatus``) in the
words of the neighbouring systems; this module is the one place that maps
them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.queue import artifacts
from graderqueue.queue.routing import parse_tags
from graderqueue.store import events
from graderqueue.store.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    Handout,
    Job,
    JobStatus,
    JobType,
    Platform,
    Result,
    Server,
    ServerType,
)

STATE_OF = {
    JobStatus.QUEUED: "QUEUED",
    JobStatus.HELD: "HELD",
    JobStatus.SENT: "STARTED",
    JobStatus.DONE: "FINISHED",
    JobStatus.ERROR: "FAILED",
    JobStatus.CANCELLED: "CANCELLED",
}
STATUS_OF = {state: status for status, state in STATE_OF.items()}
STATES = tuple(STATUS_OF)
TERMINAL = frozenset({"FINISHED", "FAILED", "CANCELLED"})

# Event kinds as timeline entries; other kinds (alerts, registry changes) are not a job's.
_TIMELINE_EVENT = {
    events.TIMEOUT: "timeout",
    events.BAD_RESULT: "failed",
    events.RELEASED: "failed",
    events.JOB_ERROR: "gave_up",
    events.REQUEUED: "requeued",
    events.CANCELLED: "cancelled",
    events.HELD: "held",
    events.RELEASED_HOLD: "released",
}


def iso(value: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with ``Z``."""
    return value.isoformat(timespec="microseconds") + "Z" if value is not None else None


def summary_query() -> Any:
    """The columns of a job summary; callers add WHERE, ORDER BY and LIMIT."""
    return (
        select(
            Job.id,
            Job.status,
            Job.name,
            Job.jobusertaskid,
            Job.received_via,
            Job.tags,
            Job.priority,
            Job.timeout_sec,
            Job.nb_fails,
            Job.received_time,
            Job.grading_start_time,
            Job.grading_end_time,
            Platform.name.label("platform"),
            Server.name.label("server"),
        )
        .select_from(Job)
        .outerjoin(Platform, Platform.id == Job.platform_id)
        .outerjoin(Server, Server.id == Job.sent_to)
    )


def summaries(session: Session, rows: list[Any]) -> list[dict[str, Any]]:
    """Rows of :func:`summary_query` as the API's job summaries (types in one query)."""
    types: dict[int, list[str]] = defaultdict(list)
    if rows:
        for job_id, name in session.execute(
            select(JobType.job_id, ServerType.name)
            .join(ServerType, ServerType.id == JobType.type_id)
            .where(JobType.job_id.in_([r.id for r in rows]))
            .order_by(JobType.job_id, ServerType.name)
        ):
            types[job_id].append(name)
    return [_summary(row, types[row.id]) for row in rows]


def _summary(row: Any, types: list[str]) -> dict[str, Any]:
    started = row.status in (JobStatus.SENT, JobStatus.DONE)
    return {
        "id": row.id,
        "state": STATE_OF.get(row.status, row.status.upper()),
        "name": row.name,
        "jobusertaskid": row.jobusertaskid,
        "platform": row.platform if row.platform is not None else None,
        "received_via": row.received_via or None,
        "tags": parse_tags(row.tags or ""),
        "types": types,
        "priority": row.priority,
        "timeout": row.timeout_sec,
        "failures": row.nb_fails,
        "received_at": iso(row.received_time),
        "started_at": iso(row.grading_start_time) if started else None,
        "finished_at": iso(row.grading_end_time),
        "server": row.server if row.status in (JobStatus.SENT, JobStatus.DONE) else None,
    }


def _visible(job_id: int, platform_id: int | None) -> list[Any]:
    where = [Job.id == job_id]
    if platform_id is not None:
        where.append(Job.platform_id == platform_id)
    return where


def state(session: Session, job_id: int, platform_id: int | None) -> str | None:
    """The job's API state; None if there is no such job, or it is another platform's."""
    status = session.scalar(select(Job.status).where(*_visible(job_id, platform_id)))
    return STATE_OF.get(status) if status is not None else None


def detail(session: Session, job_id: int, platform_id: int | None) -> dict[str, Any] | None:
    """One job: its summary, job data, result, timeline and artifacts.

    ``platform_id``: a platform sees its own jobs only (None for others').
    """
    row = session.execute(summary_query().where(*_visible(job_id, platform_id))).first()
    if row is None:
        return None
    job = session.execute(
        select(Job.jobdata, Job.taskrevision, Job.grading_end_time).where(Job.id == job_id)
    ).one()
    result = session.scalar(select(Result.resultdata).where(Result.job_id == job_id))
    return {
        **summaries(session, [row])[0],
        "taskrevision": job.taskrevision,
        "jobdata": _json(job.jobdata),
        "result": _json(result) if result is not None else None,
        "timeline": timeline(session, job_id, row),
        "artifacts": artifacts.listing(session, job_id),
    }


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def timeline(session: Session, job_id: int, row: Any) -> list[dict[str, Any]]:
    """What happened to the job, oldest first."""
    entries: list[tuple[datetime, int, dict[str, Any]]] = [
        (row.received_time, 0, {"event": "received"})
    ]
    server_name = _server_names(session)
    for h in session.execute(
        select(Handout.time, Handout.server_id).where(Handout.job_id == job_id)
    ):
        entries.append((h.time, 1, {"event": "handed_out", "server": server_name(h.server_id)}))
    for e in session.execute(
        select(Event.time, Event.kind, Event.server_id, Event.message).where(
            Event.job_id == job_id, Event.kind.in_(list(_TIMELINE_EVENT))
        )
    ):
        entry = {"event": _TIMELINE_EVENT[e.kind], "detail": e.message}
        if e.server_id is not None:
            entry["server"] = server_name(e.server_id)
        entries.append((e.time, 2, entry))
    if row.status == JobStatus.DONE and row.grading_end_time is not None:
        entries.append((row.grading_end_time, 3, {"event": "finished", "server": row.server}))
    for a in session.execute(
        select(
            DeliveryAttempt.time,
            DeliveryAttempt.ok,
            DeliveryAttempt.http_status,
            DeliveryAttempt.error,
        )
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .where(Delivery.job_id == job_id)
    ):
        outcome = "delivered" if a.ok else (a.error or f"HTTP {a.http_status}")
        entries.append((a.time, 4, {"event": "delivery_attempt", "detail": outcome}))
    entries.sort(key=lambda item: (item[0], item[1]))
    return [{"at": iso(at), **entry} for at, _order, entry in entries]


def _server_names(session: Session) -> Any:
    cache: dict[int | None, str | None] = {None: None}

    def name(server_id: int | None) -> str | None:
        if server_id not in cache:
            cache[server_id] = session.scalar(select(Server.name).where(Server.id == server_id))
        return cache[server_id]

    return name
