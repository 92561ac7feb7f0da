"""Queries behind the admin lists and the job page: plain functions over a session.

Which index walks each list:
- live jobs: ``(status, received_time)``, one walk per status, merged;
- done jobs: ``(grading_end_time)``; a done job always has one;
- events: ``(kind, time)``, ``(server_id, time)``, ``(job_id)`` or ``(time)``
  after the most selective filter given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from graderqueue.admin.live_queue import LIVE_STATUSES
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
from graderqueue.web.admin.keyset import (
    DEFAULT_LIMIT,
    SCAN_LIMIT,
    Cursor,
    Page,
    keyset_page,
    noindex,
)

NO_PLATFORM = -1  # platform filter value for jobs sent by the interface or remote users


@dataclass(frozen=True)
class JobFilter:
    name: str = ""
    status: str = ""
    platform_id: int | None = None  # NO_PLATFORM: sent without a platform
    server_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def post_conditions(self) -> list[Any]:
        conditions: list[Any] = []
        if self.name:
            conditions.append(Job.name.like(f"%{_escape_like(self.name)}%", escape="\\"))
        if self.platform_id == NO_PLATFORM:
            conditions.append(Job.platform_id.is_(None))
        elif self.platform_id is not None:
            conditions.append(noindex(Job.platform_id) == self.platform_id)
        if self.server_id is not None:
            conditions.append(noindex(Job.sent_to) == self.server_id)
        return conditions


@dataclass(frozen=True)
class EventFilter:
    kind: str = ""
    job_id: int | None = None
    server_id: int | None = None
    text: str = ""
    since: datetime | None = None
    until: datetime | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _time_range(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column <= until)
    return conditions


def live_jobs(
    session: Session,
    filters: JobFilter,
    cursor: Cursor | None = None,
    limit: int = DEFAULT_LIMIT,
    scan_limit: int = SCAN_LIMIT,
) -> Page:
    """Queued, sent and error jobs, newest received first."""
    statuses = [filters.status] if filters.status in LIVE_STATUSES else list(LIVE_STATUSES)
    return keyset_page(
        session,
        Job,
        Job.received_time,
        driver=_time_range(Job.received_time, filters.since, filters.until),
        branches=[[Job.status == status] for status in statuses],
        post=filters.post_conditions,
        cursor=cursor,
        limit=limit,
        scan_limit=scan_limit,
        options=[defer(Job.jobdata)],
    )


def done_jobs(
    session: Session,
    filters: JobFilter,
    cursor: Cursor | None = None,
    limit: int = DEFAULT_LIMIT,
    scan_limit: int = SCAN_LIMIT,
) -> Page:
    """Done jobs, most recently finished first; the date range is on the finish time."""
    return keyset_page(
        session,
        Job,
        Job.grading_end_time,
        driver=[
            Job.grading_end_time.is_not(None),
            *_time_range(Job.grading_end_time, filters.since, filters.until),
        ],
        post=filters.post_conditions,
        cursor=cursor,
        limit=limit,
        scan_limit=scan_limit,
        options=[defer(Job.jobdata)],
    )


@dataclass(frozen=True)
class ResultSummary:
    is_success: bool
    cpu_time_ms: int
    real_time_ms: int
    task_name: str
    language: str


def result_summaries(session: Session, job_ids: list[int]) -> dict[int, ResultSummary]:
    """The statistics columns of these jobs' results (not the result JSON)."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(
            Result.job_id,
            Result.is_success,
            Result.cpu_time_ms,
            Result.real_time_ms,
            Result.task_name,
            Result.language,
        ).where(Result.job_id.in_(job_ids))
    )
    return {row[0]: ResultSummary(*row[1:]) for row in rows}


def events_page(
    session: Session,
    filters: EventFilter,
    cursor: Cursor | None = None,
    limit: int = DEFAULT_LIMIT,
    scan_limit: int = SCAN_LIMIT,
) -> Page:
    """Events newest first, walking the index of the most selective filter."""
    driver = _time_range(Event.time, filters.since, filters.until)
    post: list[Any] = []
    if filters.job_id is not None:
        driver.append(Event.job_id == filters.job_id)
    elif filters.server_id is not None:
        driver.append(Event.server_id == filters.server_id)
    elif filters.kind:
        driver.append(Event.kind == filters.kind)
    if filters.job_id is not None and filters.server_id is not None:
        post.append(noindex(Event.server_id) == filters.server_id)
    if filters.kind and (filters.job_id is not None or filters.server_id is not None):
        post.append(noindex(Event.kind) == filters.kind)
    if filters.text:
        post.append(Event.message.like(f"%{_escape_like(filters.text)}%", escape="\\"))
    return keyset_page(
        session,
        Event,
        Event.time,
        driver=driver,
        post=post,
        cursor=cursor,
        limit=limit,
        scan_limit=scan_limit,
    )


# -- names for ids shown in lists (small tables) ------------------------------------


def platform_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Platform.id, Platform.name).order_by(Platform.name)).all())


def server_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Server.id, Server.name).order_by(Server.name)).all())


# -- one job ---------------------------------------------------------------------------

JSON_SHOWN_MAX = 512 * 1024  # bigger JSON is offered as a download instead of shown


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


EVENTS_SHOWN = 200


def job_detail(session: Session, job_id: int) -> JobDetail | None:
    job = session.get(Job, job_id)
    if job is None:
        return None
    type_names = list(
        session.scalars(
            select(ServerType.name)
            .join(JobType, JobType.type_id == ServerType.id)
            .where(JobType.job_id == job_id)
            .order_by(ServerType.name)
        )
    )
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
    detail = JobDetail(
        job=job,
        type_names=type_names,
        platform=platform or f"#{job.platform_id}",
        server=server or (f"#{job.sent_to}" if job.sent_to is not None else ""),
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
    delivery = session.scalars(select(Delivery).where(Delivery.job_id == job_id)).first()
    if delivery is not None:
        attempts = list(
            session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery.id)
                .order_by(DeliveryAttempt.time.desc(), DeliveryAttempt.id.desc())
                .limit(EVENTS_SHOWN)
            )
        )
        detail.delivery = DeliveryView(delivery, attempts)
    return detail
