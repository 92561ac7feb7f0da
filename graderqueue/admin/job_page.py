"""Everything the page of one job shows: the job, its result, events and delivery."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.admin.names import server_names
from graderqueue.store import events as kinds
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

JSON_SHOWN_MAX = 512 * 1024  # bigger JSON is offered as a download instead of shown
EVENTS_SHOWN = 200
ATTEMPTS_SHOWN = 100

# How an attempt ended, by the event that ended it.
ENDINGS = {
    kinds.TIMEOUT: "lease ran out",
    kinds.BAD_RESULT: "failed result",
    kinds.RELEASED: "let go by the server",
    kinds.REQUEUED: "requeued",
    kinds.CANCELLED: "cancelled",
    "grader_error": "grader error",
}


@dataclass(frozen=True)
class Attempt:
    """One hand-out of the job to a server (a ``job_handouts`` row)."""

    number: int
    time: datetime
    server_id: int | None
    ended: str  # how it ended, or "being graded" / "graded"; empty: not known
    ended_at: datetime | None = None


@dataclass
class DeliveryView:
    delivery: Delivery
    attempts: list[DeliveryAttempt]


@dataclass
class JobDetail:
    job: Job
    type_names: list[str]
    platform: str
    server: str
    result: Result | None
    events: list[Event] = field(default_factory=list)
    delivery: DeliveryView | None = None
    attempts: list[Attempt] = field(default_factory=list)
    server_names: dict[int, str] = field(default_factory=dict)

    @property
    def grading_now(self) -> bool:
        """A start time only means "being graded" while sent (or done: when it was)."""
        return self.job.status in (JobStatus.SENT, JobStatus.DONE)

    @property
    def is_live(self) -> bool:
        return self.job.status != JobStatus.DONE

    @property
    def jobdata_pretty(self) -> str | None:
        return pretty_json(self.job.jobdata)

    @property
    def resultdata_pretty(self) -> str | None:
        return pretty_json(self.result.resultdata) if self.result is not None else None


def pretty_json(text: str) -> str | None:
    """Indented JSON, or the text as it is if it is not JSON; None if too big to show."""
    if len(text) > JSON_SHOWN_MAX:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=False)
    except ValueError:
        return text


def job_detail(session: Session, job_id: int) -> JobDetail | None:
    """The job's page, or None if there is no such job (cancelled or cleaned up)."""
    job = session.get(Job, job_id)
    if job is None:
        return None
    type_names = _type_names(session, job_id)
    platform, server = _platform_and_server(session, job)
    detail = JobDetail(
        job=job,
        type_names=type_names,
        platform=platform,
        server=server,
        result=session.get(Result, job_id),
    )
    detail.events = list(
        session.scalars(
            select(Event)
            .where(Event.job_id == job_id)
            .order_by(Event.time.desc(), Event.id.desc())
            .limit(EVENTS_SHOWN)
        )
    )
    detail.delivery = _delivery(session, job_id)
    detail.attempts = attempts(session, job, detail.events)
    detail.server_names = server_names(session)
    return detail


def attempts(session: Session, job: Job, job_events: list[Event]) -> list[Attempt]:
    """Every hand-out, oldest first, each with the event that ended it.

    An attempt ends with the first ending event after it and no later than
    the next hand-out (a lease that ran out is logged when the next server
    takes the job, at that very time).
    """
    handouts = session.execute(
        select(Handout.time, Handout.server_id)
        .where(Handout.job_id == job.id)
        .order_by(Handout.time, Handout.id)
        .limit(ATTEMPTS_SHOWN)
    ).all()
    endings = sorted((e for e in job_events if e.kind in ENDINGS), key=lambda e: (e.time, e.id))
    shown = []
    for i, (time, server_id) in enumerate(handouts):
        later = handouts[i + 1].time if i + 1 < len(handouts) else None
        end = next(
            (e for e in endings if e.time > time and (later is None or e.time <= later)),
            None,
        )
        if end is not None:
            ended, ended_at = ENDINGS[end.kind], end.time
        elif later is None and job.status == JobStatus.SENT:
            ended, ended_at = "being graded", None
        elif later is None and job.status == JobStatus.DONE:
            ended, ended_at = "graded", job.grading_end_time
        else:
            ended, ended_at = "", None
        shown.append(Attempt(i + 1, time, server_id, ended, ended_at))
    return shown


def _type_names(session: Session, job_id: int) -> list[str]:
    return list(
        session.scalars(
            select(ServerType.name)
            .join(JobType, JobType.type_id == ServerType.id)
            .where(JobType.job_id == job_id)
            .order_by(ServerType.name)
        )
    )


def _platform_and_server(session: Session, job: Job) -> tuple[str, str]:
    """Who sent the job (a platform, else how it came in) and the server it went to.

    An id whose row is gone shows as ``#id``.
    """
    platform = (
        session.scalar(select(Platform.name).where(Platform.id == job.platform_id))
        if job.platform_id is not None
        else job.received_via or "-"
    )
    server = (
        session.scalar(select(Server.name).where(Server.id == job.sent_to))
        if job.sent_to is not None
        else ""
    )
    return (
        platform or f"#{job.platform_id}",
        server or (f"#{job.sent_to}" if job.sent_to is not None else ""),
    )


def _delivery(session: Session, job_id: int) -> DeliveryView | None:
    """The job's result delivery to its platform, latest attempts first, if it has one."""
    delivery = session.scalars(select(Delivery).where(Delivery.job_id == job_id)).first()
    if delivery is None:
        return None
    attempts = list(
        session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery.id)
            .order_by(DeliveryAttempt.time.desc(), DeliveryAttempt.id.desc())
            .limit(EVENTS_SHOWN)
        )
    )
    return DeliveryView(delivery, attempts)


def job_document(session: Session, job_id: int, what: str) -> str | None:
    """The stored JSON of the job's request (``what="job"``) or of its result
    (``"result"``); None if there is none."""
    if what == "job":
        job = session.get(Job, job_id)
        return job.jobdata if job is not None else None
    result = session.get(Result, job_id)
    return result.resultdata if result is not None else None
