"""The lists of live and done jobs, a page at a time.

Which index walks each list:
- live jobs: ``(status, received_time)``, one walk per status, merged;
- done jobs: ``(grading_end_time)``; a done job always has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from graderqueue.admin import verdicts
from graderqueue.admin.conditions import contains, noindex, time_range
from graderqueue.admin.keyset import DEFAULT_LIMIT, SCAN_LIMIT, Cursor, Page, keyset_page
from graderqueue.admin.live_queue import LISTED_STATUSES
from graderqueue.store.models import Job, JobStatus, Result

NO_PLATFORM = -1  # platform filter value for jobs sent by the interface or remote users


@dataclass(frozen=True)
class JobFilter:
    name: str = ""
    status: str = ""
    platform_id: int | None = None  # NO_PLATFORM: sent without a platform
    server_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Done jobs only: their result's verdict, task name and language.
    verdict: str = ""
    task: str = ""
    language: str = ""

    @property
    def filtered(self) -> bool:
        return bool(
            self.name
            or self.status
            or self.platform_id is not None
            or self.server_id is not None
            or self.since
            or self.until
            or self.verdict
            or self.task
            or self.language
        )

    @property
    def post_conditions(self) -> list[Any]:
        """The filters no list index serves, checked on the rows walked."""
        conditions: list[Any] = verdicts.result_is(self.verdict, self.task, self.language)
        if self.name:
            conditions.append(contains(Job.name, self.name))
        if self.platform_id == NO_PLATFORM:
            conditions.append(Job.platform_id.is_(None))
        elif self.platform_id is not None:
            conditions.append(noindex(Job.platform_id) == self.platform_id)
        if self.server_id is not None:
            conditions.append(noindex(Job.sent_to) == self.server_id)
        return conditions


def live_jobs(
    session: Session,
    filters: JobFilter,
    cursor: Cursor | None = None,
    limit: int = DEFAULT_LIMIT,
    scan_limit: int = SCAN_LIMIT,
) -> Page:
    """Queued, sent and error jobs, newest received first."""
    statuses = [filters.status] if filters.status in LISTED_STATUSES else list(LISTED_STATUSES)
    return keyset_page(
        session,
        Job,
        Job.received_time,
        driver=time_range(Job.received_time, filters.since, filters.until),
        branches=[[Job.status == status] for status in statuses],
        post=filters.post_conditions,
        cursor=cursor,
        limit=limit,
        scan_limit=scan_limit,
        options=[defer(Job.jobdata)],
    )


@dataclass(frozen=True)
class DoneMatch:
    """The done jobs a done-list filter shows, as ``queue/control.act_by_filter`` takes
    them (bulk requeue from the list): the same conditions, done jobs only."""

    filters: JobFilter

    def conditions(self, session: Session) -> list[Any]:
        return [
            Job.status == JobStatus.DONE,
            *time_range(Job.grading_end_time, self.filters.since, self.filters.until),
            *self.filters.post_conditions,
        ]


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
            *time_range(Job.grading_end_time, filters.since, filters.until),
        ],
        post=filters.post_conditions,
        cursor=cursor,
        limit=limit,
        scan_limit=scan_limit,
        options=[defer(Job.jobdata)],
    )


@dataclass(frozen=True)
class ResultSummary:
    verdict: str
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
            Result.verdict,
            Result.cpu_time_ms,
            Result.real_time_ms,
            Result.task_name,
            Result.language,
        ).where(Result.job_id.in_(job_ids))
    )
    return {row[0]: ResultSummary(*row[1:]) for row in rows}
