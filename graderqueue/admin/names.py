"""Names for the ids the admin pages show (platforms and servers: small tables)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.store.models import Platform, Server


def platform_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Platform.id, Platform.name).order_by(Platform.name)).all())


def server_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Server.id, Server.name).order_by(Server.name)).all())


def server_name(session: Session, server_id: int) -> str | None:
    """The server's name, or None if there is no such server."""
    return session.scalar(select(Server.name).where(Server.id == server_id))
