"""The grading servers as the servers page and the dashboard show them.

A server's state is read from what the queue already records (jobs it
holds, its last poll, failed wake-ups): nothing asks the server itself.

The rule for *lost* lives here alone (:func:`is_lost`): every page that says
"lost" (servers, server, dashboard, the attention strip, the types
overview) reads it from :func:`servers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
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

BUSY, POLLING, ASLEEP, UNREACHABLE, LOST = "busy", "polling", "asleep", "unreachable", "lost"
STATES = (BUSY, POLLING, ASLEEP, UNREACHABLE, LOST)


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
    lease_ends: datetime | None = None  # the latest lease of the jobs it holds
    lease_ran_out: bool = False  # one of its jobs' leases is over
    type_id: int = 0

    @property
    def free_slots(self) -> int:
        """Jobs it could take now: none when lost, unreachable or drained."""
        if self.drained or self.state in (LOST, UNREACHABLE):
            return 0
        return max(0, self.max_jobs - self.held)

    @property
    def live(self) -> bool:
        """Expected to take work: neither lost nor unreachable nor drained."""
        return not self.drained and self.state not in (LOST, UNREACHABLE)


def is_lost(
    last_poll: datetime | None,
    since: datetime | None,
    wakeup_url: str,
    wakeup_fails: int,
    lease_ran_out: bool,
    drained: bool,
    lost_before: datetime,
) -> bool:
    """Stopped checking in: no poll since ``lost_before`` and no other way to reach it.

    A server asleep between jobs does not poll either: it is lost only when
    its wake-ups fail, a lease it holds ran out, or it has no wake-up URL
    (such a server must poll to get work). A drained server was stopped on
    purpose: never lost. ``since`` (its registration) stands in for a poll
    that never came.
    """
    if drained:
        return False
    seen = last_poll or since
    if seen is not None and seen >= lost_before:
        return False
    return wakeup_fails > 0 or lease_ran_out or not wakeup_url


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
    lease_ends: dict[int, tuple[datetime | None, datetime | None]]  # (earliest, latest) lease
    type_names: dict[int, str]
    tags: dict[int, list[str]]  # by type id
    token_names: dict[int, str]
    paused_types: set[int]


def _lookups(session: Session) -> _Lookups:
    held: dict[int, int] = {}
    leases: dict[int, list[datetime]] = {}
    # Every sent job's row through the (status, lease_expires) index, added
    # up here: grouped in SQL, SQLite walks (sent_to, status) over every
    # done job instead. Sent jobs are few (at most the servers' slots).
    for server_id, lease in session.execute(
        select(Job.sent_to, Job.lease_expires).where(Job.status == JobStatus.SENT)
    ):
        held[server_id] = held.get(server_id, 0) + 1
        if lease is not None:
            leases.setdefault(server_id, []).append(lease)
    lease_ends: dict[int, tuple[datetime | None, datetime | None]] = {
        server_id: (min(ends), max(ends)) for server_id, ends in leases.items()
    }
    type_names = dict(session.execute(select(ServerType.id, ServerType.name)).all())
    tags: dict[int, list[str]] = {}
    for type_id, tag in session.execute(
        select(TypeTag.type_id, Tag.name).join(Tag, Tag.id == TypeTag.tag_id).order_by(Tag.name)
    ):
        tags.setdefault(type_id, []).append(tag)
    token_names = dict(session.execute(select(ServerToken.id, ServerToken.name)).all())
    paused = set(session.scalars(select(ServerType.id).where(ServerType.paused.is_(True))))
    return _Lookups(held, lease_ends, type_names, tags, token_names, paused)


def _view(
    server: Server, lookups: _Lookups, now: datetime, recent: datetime, lost_before: datetime
) -> ServerView:
    count = lookups.held.get(server.id, 0)
    first, last = lookups.lease_ends.get(server.id, (None, None))
    ran_out = first is not None and first <= now
    lost = is_lost(
        server.last_poll_time,
        server.created_at,
        server.wakeup_url,
        server.wakeup_fails,
        ran_out,
        bool(server.drained),
        lost_before,
    )
    return ServerView(
        id=server.id,
        name=server.name,
        type_name=lookups.type_names.get(server.type_id, f"#{server.type_id}"),
        tags=lookups.tags.get(server.type_id, []),
        state=LOST
        if lost
        else server_state(count, server.last_poll_time, server.wakeup_fails, recent),
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
        lease_ends=last,
        lease_ran_out=ran_out,
        type_id=server.type_id,
    )


def lost_after_sec(settings: Settings) -> float:
    """Silence after which a server may be lost.

    Never sooner than a long poll plus a margin: a server waiting in one has
    not "polled" since it started waiting.
    """
    return max(settings.server_lost_after_sec, settings.poll_wait_sec + 5)


def servers(session: Session, settings: Settings, now: datetime | None = None) -> list[ServerView]:
    """Every registered server by name, with its state as of ``now``."""
    now = now or utcnow()
    # A server in a long poll is still polling, though its last poll may be
    # up to poll_wait_sec old.
    recent = now - timedelta(seconds=max(settings.wakeup_recent_sec, settings.poll_wait_sec + 5))
    lost_before = now - timedelta(seconds=lost_after_sec(settings))
    lookups = _lookups(session)
    return [
        _view(server, lookups, now, recent, lost_before)
        for server in session.scalars(select(Server).order_by(Server.name))
    ]


def server_summary(views: list[ServerView]) -> dict[str, int]:
    """How many servers are in each state (every state present, even at zero)."""
    summary = dict.fromkeys(STATES, 0)
    for view in views:
        summary[view.state] += 1
    return summary


def server_view(
    session: Session, settings: Settings, server_id: int, now: datetime | None = None
) -> ServerView | None:
    """One server's state, by the same rules as the list."""
    return next((v for v in servers(session, settings, now) if v.id == server_id), None)
