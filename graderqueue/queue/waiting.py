"""What is waiting, where, for how long, and how fast jobs finish: ``GET /api/v1/queue``.

Read from the live rows only (queued jobs through the ``(status, ...)``
indexes, done jobs of the last few minutes through ``grading_end_time``), so
the cost does not grow with the history kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.queue.routing import parse_tags
from graderqueue.store.models import Job, JobStatus, JobType, Platform, ServerType, utcnow

# The window recent throughput is measured over.
THROUGHPUT_WINDOW_SEC = 300


def _age(oldest: datetime | None, now: datetime) -> float | None:
    return round((now - oldest).total_seconds(), 3) if oldest is not None else None


def summary(session: Session, platform_id: int | None = None) -> dict[str, Any]:
    """Waiting jobs per server type, tag and platform; the oldest wait; recent throughput.

    ``platform_id`` limits every figure to that platform's jobs (a platform's
    own view); None counts every job (an operator's).
    """
    now = utcnow()
    mine = [Job.platform_id == platform_id] if platform_id is not None else []
    queued = [Job.status == JobStatus.QUEUED, *mine]
    total, oldest = session.execute(
        select(func.count(), func.min(Job.received_time)).where(*queued)
    ).one()
    return {
        "waiting": total,
        "oldest_waiting_sec": _age(oldest, now),
        "by_type": _by_type(session, mine, now),
        "by_tag": _by_tag(session, queued),
        "by_platform": _by_platform(session, queued, now),
        "throughput": _throughput(session, mine, now),
    }


def _by_type(session: Session, mine: list[Any], now: datetime) -> list[dict[str, Any]]:
    rows = session.execute(
        select(ServerType.name, func.count(Job.id), func.min(Job.received_time))
        .select_from(ServerType)
        .join(JobType, (JobType.type_id == ServerType.id) & (JobType.status == JobStatus.QUEUED))
        .join(Job, (Job.id == JobType.job_id) & (Job.status == JobStatus.QUEUED))
        .where(*mine)
        .group_by(ServerType.name)
        .order_by(ServerType.name)
    ).all()
    return [
        {"type": name, "waiting": count, "oldest_waiting_sec": _age(oldest, now)}
        for name, count, oldest in rows
    ]


def _by_tag(session: Session, queued: list[Any]) -> list[dict[str, Any]]:
    # Few distinct tag lists among waiting jobs: count those, then split.
    counts: dict[str, int] = {}
    rows = session.execute(select(Job.tags, func.count()).where(*queued).group_by(Job.tags))
    for tags, count in rows:
        for tag in parse_tags(tags or "") or [""]:
            counts[tag] = counts.get(tag, 0) + count
    return [{"tag": tag, "waiting": counts[tag]} for tag in sorted(counts)]


def _by_platform(session: Session, queued: list[Any], now: datetime) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Platform.name, Job.received_via, func.count(), func.min(Job.received_time))
        .select_from(Job)
        .outerjoin(Platform, Platform.id == Job.platform_id)
        .where(*queued)
        .group_by(Platform.name, Job.received_via)
        .order_by(Platform.name, Job.received_via)
    ).all()
    return [
        {
            "platform": name if name is not None else via,
            "waiting": count,
            "oldest_waiting_sec": _age(oldest, now),
        }
        for name, via, count, oldest in rows
    ]


def _throughput(session: Session, mine: list[Any], now: datetime) -> dict[str, Any]:
    since = now - timedelta(seconds=THROUGHPUT_WINDOW_SEC)
    done = session.scalar(
        select(func.count()).where(
            Job.status == JobStatus.DONE, Job.grading_end_time >= since, *mine
        )
    )
    return {
        "window_sec": THROUGHPUT_WINDOW_SEC,
        "finished": done,
        "per_minute": round(done * 60 / THROUGHPUT_WINDOW_SEC, 2),
    }
