"""Everything the page of one job shows: the job, its result, events and delivery."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.store.models import (
    Delivery,
    DeliveryAttempt,
    Event,
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
    return detail


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
