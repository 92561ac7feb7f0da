"""What the platforms, types and server pages show before an admin acts.

Small tables read whole (platforms, types, tags, servers, tokens); jobs
only counted by status through the ``(platform_id, status, id)`` and
``job_types`` claim indexes. The actions themselves are in
:mod:`graderqueue.registry` (lifecycle, type_lifecycle, fleet, operations).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.registry.lifecycle import LIVE
from graderqueue.store.models import (
    Job,
    JobStatus,
    JobType,
    Platform,
    PlatformKey,
    Server,
    ServerToken,
    ServerType,
    Tag,
    TypeTag,
)


def name_of(session: Session, model: type, row_id: int) -> str | None:
    """The name of a platform, type, tag, server or token by its id (None: no such row)."""
    return session.scalar(select(model.name).where(model.id == row_id))  # type: ignore[attr-defined]


# -- platforms and their fair share ------------------------------------------------


@dataclass(frozen=True)
class PlatformRow:
    id: int
    name: str
    disabled: bool
    weight: int
    max_queued: int | None
    queued: int  # queued and held: what max_queued counts
    sent: int
    # Its part of the hand-outs while every platform with queued jobs keeps
    # some queued (at one priority); None when it has none queued.
    share: float | None
    return_url: str
    active_keys: int
    force_tag: str | None
    require_fresh: bool
    restrict_paths: str
    lenient_integers: bool


def _live_counts(session: Session, platform_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    if not platform_ids:
        return counts
    # Each (platform, live status) pair named: the (platform_id, status, id)
    # index then reads live jobs only, never a platform's done ones.
    for platform_id, status, n in session.execute(
        select(Job.platform_id, Job.status, func.count())
        .where(Job.platform_id.in_(platform_ids), Job.status.in_(LIVE))
        .group_by(Job.platform_id, Job.status)
    ):
        counts.setdefault(platform_id, {})[str(status)] = n
    return counts


def platform_rows(session: Session) -> list[PlatformRow]:
    """Every platform with its fair-share standing, by name."""
    platforms = list(session.scalars(select(Platform).order_by(Platform.name)))
    counts = _live_counts(session, [p.id for p in platforms])
    keys = dict(
        session.execute(
            select(PlatformKey.platform_id, func.count())
            .where(PlatformKey.active.is_(True))
            .group_by(PlatformKey.platform_id)
        ).all()
    )
    tags = dict(session.execute(select(Tag.id, Tag.name)).all())

    def waiting(p: Platform) -> int:
        c = counts.get(p.id, {})
        return c.get(JobStatus.QUEUED, 0) + c.get(JobStatus.HELD, 0)

    competing = sum(p.weight for p in platforms if counts.get(p.id, {}).get(JobStatus.QUEUED))
    return [
        PlatformRow(
            id=p.id,
            name=p.name,
            disabled=bool(p.disabled),
            weight=p.weight,
            max_queued=p.max_queued,
            queued=waiting(p),
            sent=counts.get(p.id, {}).get(JobStatus.SENT, 0),
            share=(p.weight / competing if counts.get(p.id, {}).get(JobStatus.QUEUED) else None),
            return_url=p.return_url,
            active_keys=keys.get(p.id, 0),
            force_tag=tags.get(p.force_tag_id) if p.force_tag_id is not None else None,
            require_fresh=bool(p.require_fresh),
            restrict_paths=p.restrict_paths or "",
            lenient_integers=bool(p.lenient_integers),
        )
        for p in platforms
    ]


@dataclass(frozen=True)
class KeyRow:
    fingerprint: str
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class PlatformDetail:
    row: PlatformRow
    keys: list[KeyRow]
    tags: list[str]  # every tag, for the forced-tag choice


def platform_detail(session: Session, platform_id: int) -> PlatformDetail | None:
    row = next((r for r in platform_rows(session) if r.id == platform_id), None)
    if row is None:
        return None
    of_platform = PlatformKey.platform_id == platform_id
    keys = [
        KeyRow(k.fingerprint, bool(k.active), k.created_at)
        for k in session.scalars(select(PlatformKey).where(of_platform).order_by(PlatformKey.id))
    ]
    return PlatformDetail(row, keys, list(session.scalars(select(Tag.name).order_by(Tag.name))))


# -- server types and tags ----------------------------------------------------------


@dataclass(frozen=True)
class TypeRow:
    id: int
    name: str
    tags: list[str]
    paused: bool
    servers: int
    drained: int
    tokens: int
    queued: int  # jobs waiting that it may run (a job counts for each of its types)


def type_rows(session: Session) -> list[TypeRow]:
    types = list(session.scalars(select(ServerType).order_by(ServerType.name)))
    tags: dict[int, list[str]] = {}
    for type_id, tag in session.execute(
        select(TypeTag.type_id, Tag.name).join(Tag, Tag.id == TypeTag.tag_id).order_by(Tag.name)
    ):
        tags.setdefault(type_id, []).append(tag)
    servers: dict[int, list[bool]] = {}
    for type_id, drained in session.execute(select(Server.type_id, Server.drained)):
        servers.setdefault(type_id, []).append(bool(drained))
    tokens = dict(
        session.execute(
            select(ServerToken.type_id, func.count()).group_by(ServerToken.type_id)
        ).all()
    )
    queued = dict(
        session.execute(
            select(JobType.type_id, func.count())
            # Naming every type lets the claim index (type_id, status, ...)
            # count only queued rows, not every done job's row.
            .where(JobType.type_id.in_([t.id for t in types]), JobType.status == JobStatus.QUEUED)
            .group_by(JobType.type_id)
        ).all()
    )
    return [
        TypeRow(
            id=t.id,
            name=t.name,
            tags=tags.get(t.id, []),
            paused=bool(t.paused),
            servers=len(servers.get(t.id, [])),
            drained=sum(servers.get(t.id, [])),
            tokens=tokens.get(t.id, 0),
            queued=queued.get(t.id, 0),
        )
        for t in types
    ]


@dataclass(frozen=True)
class TagRow:
    id: int
    name: str
    types: list[str]
    forced_by: list[str]  # platforms that add it to every job


def tag_rows(session: Session) -> list[TagRow]:
    types: dict[int, list[str]] = {}
    for tag_id, type_name in session.execute(
        select(TypeTag.tag_id, ServerType.name)
        .join(ServerType, ServerType.id == TypeTag.type_id)
        .order_by(ServerType.name)
    ):
        types.setdefault(tag_id, []).append(type_name)
    forced: dict[int, list[str]] = {}
    for tag_id, platform in session.execute(
        select(Platform.force_tag_id, Platform.name).where(Platform.force_tag_id.is_not(None))
    ):
        forced.setdefault(tag_id, []).append(platform)
    return [
        TagRow(t.id, t.name, types.get(t.id, []), forced.get(t.id, []))
        for t in session.scalars(select(Tag).order_by(Tag.name))
    ]


# -- one server ------------------------------------------------------------------


@dataclass(frozen=True)
class ServerForm:
    id: int
    name: str
    type_name: str
    wakeup_url: str
    signed_wakeups: bool
    max_jobs: int
    ssl_serial: str
    ssl_dn: str
    token: str | None  # the server token it registered through, if any
    drained: bool
    held: int
    types: list[str]  # every type, for the choice


def server_form(session: Session, server_id: int) -> ServerForm | None:
    server = session.get(Server, server_id)
    if server is None:
        return None
    held = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.sent_to == server.id, Job.status == JobStatus.SENT)
    )
    types = list(session.scalars(select(ServerType.name).order_by(ServerType.name)))
    return ServerForm(
        id=server.id,
        name=server.name,
        type_name=name_of(session, ServerType, server.type_id) or "",
        wakeup_url=server.wakeup_url,
        signed_wakeups=bool(server.wakeup_secret),
        max_jobs=server.max_concurrent_jobs,
        ssl_serial=server.ssl_serial or "",
        ssl_dn=server.ssl_dn or "",
        token=name_of(session, ServerToken, server.token_id) if server.token_id else None,
        drained=bool(server.drained),
        held=held or 0,
        types=types,
    )
