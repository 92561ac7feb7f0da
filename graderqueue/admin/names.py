"""Names for the ids the admin pages show (platforms, servers, tags: small tables)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.store.models import Platform, Server, Tag


def platform_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Platform.id, Platform.name).order_by(Platform.name)).all())


def server_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Server.id, Server.name).order_by(Server.name)).all())


def server_name(session: Session, server_id: int) -> str | None:
    """The server's name, or None if there is no such server."""
    return session.scalar(select(Server.name).where(Server.id == server_id))


def platform_name(session: Session, platform_id: int) -> str | None:
    """The platform's name, or None if there is no such platform."""
    return session.scalar(select(Platform.name).where(Platform.id == platform_id))


def tag_names(session: Session) -> list[str]:
    """Every tag, by name (the send form offers them)."""
    return list(session.scalars(select(Tag.name).order_by(Tag.name)))
