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
from typing import Any

from sqlalchemy import String, exists, func, literal, select
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest
from graderqueue.protocol.numbers import parse_int
from graderqueue.queue import job_view
from graderqueue.store.models import Job, JobType, Platform, ServerType

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
        if platform_id is not None and values.get("platform"):
            raise BadRequest("A platform sees its own jobs only: no platform filter.")
        statuses = []
        for state in filter(None, (values.get("state") or "").upper().split(",")):
            if state.strip() not in job_view.STATUS_OF:
                raise BadRequest(f"Unknown state {state!r}: one of {', '.join(job_view.STATES)}.")
            statuses.append(job_view.STATUS_OF[state.strip()])
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


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise BadRequest(f"Filter {key} must be a string.")
    text = str(value).strip()
    if len(text) > 255:
        raise BadRequest(f"Filter {key} is too long.")
    return text


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _time(key: str, text: str | None) -> datetime | None:
    """ISO 8601 (a zone, if given, is converted to UTC) or unix seconds."""
    if not text:
        return None
    number = parse_int(text)
    try:
        if number is not None:
            return datetime.fromtimestamp(number, UTC).replace(tzinfo=None)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise BadRequest(f"Invalid {key}: ISO 8601 or unix seconds.") from exc
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def parse_cursor(text: str | None) -> int | None:
    if not text:
        return None
    value = parse_int(text)
    if value is None or value < 1:
        raise BadRequest("Invalid cursor.")
    return value


def page(
    session: Session, jobs: JobFilter, *, limit: int, cursor: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of job summaries, newest first, and the cursor of the next page."""
    where = jobs.conditions(session)
    if where is None:
        return [], None
    if cursor is not None:
        where.append(Job.id < cursor)
    rows = session.execute(
        job_view.summary_query().where(*where).order_by(Job.id.desc()).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return job_view.summaries(session, rows), (rows[-1].id if more and rows else None)


def matching_ids(session: Session, jobs: JobFilter, statuses: frozenset[str]) -> Iterator[int]:
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


def count(session: Session, jobs: JobFilter, statuses: frozenset[str]) -> int:
    where = jobs.conditions(session)
    if where is None:
        return 0
    return session.scalar(
        select(func.count()).select_from(Job).where(*where, Job.status.in_(sorted(statuses)))
    )
