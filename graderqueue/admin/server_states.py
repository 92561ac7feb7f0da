"""The grading servers as the servers page and the dashboard show them.

A server's state is read from what the queue already records (jobs it
holds, its last poll, failed wake-ups): nothing asks the server itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.store.models import (
    Job,
    JobStatus,
    Server,
    ServerToken,
    ServerType,
    Tag,
    TypeTag,
    utcnow,
)

BUSY, POLLING, ASLEEP, UNREACHABLE = "busy", "polling", "asleep", "unreachable"


@dataclass(frozen=True)
class ServerView:
    id: int
    name: str
    type_name: str
    tags: list[str]
    state: str
    held: int
    max_jobs: int
    last_poll: datetime | None
    wakeup_url: str
    wakeup_fails: int
    last_wakeup: datetime | None
    registered_by: str  # "certificate" or "token <name>"
    ip: str
    drained: bool = False  # `server drain`: no new job
    type_paused: bool = False  # its type's dispatch is paused


def server_state(held: int, last_poll: datetime | None, wakeup_fails: int, recent: datetime) -> str:
    """Busy if it holds jobs; polling if it asked for work lately; else asleep or unreachable."""
    if held > 0:
        return BUSY
    if last_poll is not None and last_poll >= recent:
        return POLLING
    return UNREACHABLE if wakeup_fails > 0 else ASLEEP


@dataclass(frozen=True)
class _Lookups:
    """The small tables a server's row names: read once for the whole list."""

    held: dict[int, int]  # jobs sent to each server
    type_names: dict[int, str]
    tags: dict[int, list[str]]  # by type id
    token_names: dict[int, str]
    paused_types: set[int]


def _lookups(session: Session) -> _Lookups:
    held = dict(
        session.execute(
            select(Job.sent_to, func.count())
            .where(Job.status == JobStatus.SENT)
            .group_by(Job.sent_to)
        ).all()
    )
    type_names = dict(session.execute(select(ServerType.id, ServerType.name)).all())
    tags: dict[int, list[str]] = {}
    for type_id, tag in session.execute(
        select(TypeTag.type_id, Tag.name).join(Tag, Tag.id == TypeTag.tag_id).order_by(Tag.name)
    ):
        tags.setdefault(type_id, []).append(tag)
    token_names = dict(session.execute(select(ServerToken.id, ServerToken.name)).all())
    paused = set(session.scalars(select(ServerType.id).where(ServerType.paused.is_(True))))
    return _Lookups(held, type_names, tags, token_names, paused)


def _view(server: Server, lookups: _Lookups, recent: datetime) -> ServerView:
    count = lookups.held.get(server.id, 0)
    return ServerView(
        id=server.id,
        name=server.name,
        type_name=lookups.type_names.get(server.type_id, f"#{server.type_id}"),
        tags=lookups.tags.get(server.type_id, []),
        state=server_state(count, server.last_poll_time, server.wakeup_fails, recent),
        held=count,
        max_jobs=server.max_concurrent_jobs,
        last_poll=server.last_poll_time,
        wakeup_url=server.wakeup_url,
        wakeup_fails=server.wakeup_fails,
        last_wakeup=server.last_wakeup_time,
        registered_by=(
            f"token {lookups.token_names.get(server.token_id, server.token_id)}"
            if server.token_id is not None
            else "certificate"
        ),
        ip=server.ip,
        drained=bool(server.drained),
        type_paused=server.type_id in lookups.paused_types,
    )


def servers(session: Session, settings: Settings, now: datetime | None = None) -> list[ServerView]:
    """Every registered server by name, with its state as of ``now``."""
    now = now or utcnow()
    # A server in a long poll is still polling, though its last poll may be
    # up to poll_wait_sec old.
    recent = now - timedelta(seconds=max(settings.wakeup_recent_sec, settings.poll_wait_sec + 5))
    lookups = _lookups(session)
    return [
        _view(server, lookups, recent)
        for server in session.scalars(select(Server).order_by(Server.name))
    ]


def server_summary(views: list[ServerView]) -> dict[str, int]:
    """How many servers are in each state (every state present, even at zero)."""
    summary = dict.fromkeys((BUSY, POLLING, ASLEEP, UNREACHABLE), 0)
    for view in views:
        summary[view.state] += 1
    return summary
