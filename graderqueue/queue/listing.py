"""Finding jobs by filter: ``GET /api/v1/jobs`` and ``POST /api/v1/jobs/actions``.

One :class:`JobFilter` serves both, so a dry run of an action counts exactly
the jobs the same filter lists. Pages are keyset pages on the job id, newest
first: each costs the same on page 1 and page 10,000 (``ix_jobs_status_id``,
``ix_jobs_platform_status_id`` and the primary key serve the usual filters).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import String, exists, func, literal, select
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest
from graderqueue.protocol.numbers import parse_int
from graderqueue.queue import job_view
from graderqueue.store.models import Job, JobType, Platform, ServerType

# What both databases store (MariaDB's DATETIME starts at year 1000).
TIME_MIN = datetime(1000, 1, 1)
TIME_MAX = datetime(9999, 12, 31, 23, 59, 59)
# The indexes a plain filter's pages are read through (JobFilter.keyset_index).
KEYSET_INDEXES = ("ix_jobs_status_id", "ix_jobs_platform_status_id", "ix_jobs_platform_id")
FILTER_KEYS = ("state", "tag", "type", "name", "jobusertaskid", "since", "until", "platform")


@dataclass(frozen=True)
class JobFilter:
    statuses: tuple[str, ...] = ()
    tag: str | None = None
    type_name: str | None = None
    name: str | None = None
    jobusertaskid: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    platform_name: str | None = None
    # Set by the caller's identity, never by the request: a platform's own jobs.
    platform_id: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, platform_id: int | None) -> JobFilter:
        """From query parameters or an action's ``filter``; unknown keys are refused."""
        unknown = sorted(set(raw) - set(FILTER_KEYS))
        if unknown:
            raise BadRequest(f"Unknown filter {', '.join(unknown)}: use {', '.join(FILTER_KEYS)}.")
        values = {k: _text(k, raw[k]) for k in raw}
        for key in ("state", "since", "until"):
            if values.get(key) == "":
                raise BadRequest(f"Filter {key} is empty: leave it out to match any.")
        statuses = []
        for state in filter(None, (values.get("state") or "").split(",")):
            if state not in job_view.STATUS_OF:
                raise BadRequest(f"Unknown state {state!r}: one of {', '.join(job_view.STATES)}.")
            statuses.append(job_view.STATUS_OF[state])
        return cls(
            statuses=tuple(statuses),
            tag=values.get("tag") or None,
            type_name=values.get("type") or None,
            name=values.get("name") or None,
            jobusertaskid=values.get("jobusertaskid") or None,
            since=_time("since", values.get("since")),
            until=_time("until", values.get("until")),
            platform_name=values.get("platform") or None,
            platform_id=platform_id,
        )

    def keyset_index(self) -> str | None:
        """The index that serves this filter's pages newest first, when it is one of
        the plain ones (a platform, one state, or both); None: let the planner pick."""
        if self.name or self.jobusertaskid or self.type_name or self.tag or len(self.statuses) > 1:
            return None
        platform = self.platform_id is not None or self.platform_name is not None
        if platform and self.statuses:
            return "ix_jobs_platform_status_id"
        if self.statuses:
            return "ix_jobs_status_id"
        return "ix_jobs_platform_id" if platform else None

    def conditions(self, session: Session) -> list[Any] | None:
        """WHERE clauses on ``jobs``; None when nothing can match (an unknown name)."""
        j = Job.__table__.c
        where: list[Any] = []
        if self.platform_id is not None:
            where.append(j.platform_id == self.platform_id)
        if self.platform_name is not None:
            pid = session.scalar(select(Platform.id).where(Platform.name == self.platform_name))
            if pid is None:
                return None
            where.append(j.platform_id == pid)
        if self.statuses:
            where.append(j.status.in_(self.statuses))
        if self.type_name is not None:
            tid = session.scalar(select(ServerType.id).where(ServerType.name == self.type_name))
            if tid is None:
                return None
            where.append(exists().where(JobType.job_id == j.id, JobType.type_id == tid))
        if self.tag is not None:
            # Tags are kept as "a,b": match a whole name between commas.
            padded = literal(",", String).concat(j.tags).concat(",")
            where.append(padded.like(f"%,{_escape_like(self.tag)},%", escape="\\"))
        if self.name is not None:
            where.append(j.name == self.name)
        if self.jobusertaskid is not None:
            where.append(j.jobusertaskid == self.jobusertaskid)
        if self.since is not None:
            where.append(j.received_time >= self.since)
        if self.until is not None:
            where.append(j.received_time < self.until)
        return where


class Matcher(Protocol):
    """What picks jobs for an action by filter: this module's JobFilter, or another
    list's filter (the admin's done list) with the same method."""

    def conditions(self, session: Session) -> list[Any] | None: ...


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"Filter {key} must be a string.")
    text = str(value).strip()
    if len(text) > 255:
        raise BadRequest(f"Filter {key} is too long.")
    return text


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _time(key: str, text: str | None) -> datetime | None:
    """ISO 8601 (a zone, if given, is converted to UTC) or unix seconds.

    A time beyond what datetime holds (year 1 with a negative offset, a
    unix time in year 300,000) is the nearest one it holds: as a bound it
    selects the same jobs.
    """
    if not text:
        return None
    number = parse_int(text)
    if number is not None:
        try:
            return datetime.fromtimestamp(number, UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            return TIME_MAX
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"Invalid {key}: ISO 8601 or unix seconds.") from exc
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            return TIME_MIN if moment.year < 2 else TIME_MAX
    return min(max(moment, TIME_MIN), TIME_MAX)


def parse_cursor(text: str | None) -> int | None:
    if not text:
        return None
    value = parse_int(text)
    if value is None or value < 1:
        raise BadRequest("Invalid cursor.")
    return value


def page_query(session: Session, jobs: JobFilter, *, limit: int, cursor: int | None) -> Any:
    """The statement of one page (None when nothing can match); kept apart for plan tests."""
    where = jobs.conditions(session)
    if where is None:
        return None
    if cursor is not None:
        where.append(Job.id < cursor)
    query = job_view.summary_query().where(*where).order_by(Job.id.desc()).limit(limit + 1)
    index = jobs.keyset_index()
    if index is not None:
        # At a million jobs MariaDB read these indexes by equality and sorted,
        # or intersected two of them, instead of walking one from the cursor:
        # 0.6-1.3 s a page, 0.9 ms with the index named (scripts/bench/run api).
        for dialect in ("mysql", "mariadb"):
            query = query.with_hint(Job, f"FORCE INDEX ({index})", dialect_name=dialect)
    return query


def page(
    session: Session, jobs: JobFilter, *, limit: int, cursor: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of job summaries, newest first, and the cursor of the next page."""
    query = page_query(session, jobs, limit=limit, cursor=cursor)
    if query is None:
        return [], None
    rows = session.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return job_view.summaries(session, rows), (rows[-1].id if more and rows else None)


def matching_ids(session: Session, jobs: Matcher, statuses: frozenset[str]) -> Iterator[int]:
    """Ids of the jobs that match and are in ``statuses``, oldest first, in batches."""
    where = jobs.conditions(session)
    if where is None:
        return
    where.append(Job.status.in_(sorted(statuses)))
    after = 0
    while True:
        batch = list(
            session.scalars(
                select(Job.id).where(*where, Job.id > after).order_by(Job.id).limit(1000)
            )
        )
        yield from batch
        if len(batch) < 1000:
            return
        after = batch[-1]


def count(session: Session, jobs: Matcher, statuses: frozenset[str]) -> int:
    where = jobs.conditions(session)
    if where is None:
        return 0
    return session.scalar(
        select(func.count()).select_from(Job).where(*where, Job.status.in_(sorted(statuses)))
    )
