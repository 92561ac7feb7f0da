"""Stopping and restarting dispatch: drain a server, pause a server type or the queue.

Jobs are still accepted throughout; only hand-outs stop. Each change is a
row every node reads in its next claim (queue/claim.dispatch_stopped), and an
event in the log. After an undrain or a resume, the caller wakes pollers
(``Runtime.jobs_available``) with the types this returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from graderqueue.queue.claim import PAUSED
from graderqueue.registry.actions import server_by_name, type_by_name
from graderqueue.store import events
from graderqueue.store.models import QueueFlag, Server, ServerType, utcnow


def drain(session: Session, name: str, *, on: bool, actor: str) -> list[int]:
    """Drain (``on``) or undrain a server; returns its type, to wake after an undrain."""
    server = server_by_name(session, name)
    session.execute(update(Server).where(Server.id == server.id).values(drained=on))
    events.log_event(
        session,
        events.SERVER_DRAINED if on else events.SERVER_UNDRAINED,
        server_id=server.id,
        message=f"{'drained' if on else 'undrained'} by {actor}",
    )
    return [] if on else [server.type_id]


def pause(session: Session, type_name: str | None, *, on: bool, actor: str) -> list[int]:
    """Pause (``on``) or resume one server type, or the whole queue (``type_name`` None).

    Returns the types to wake after a resume.
    """
    what = f"type {type_name}" if type_name else "the queue"
    if type_name is not None:
        server_type = type_by_name(session, type_name)
        session.execute(update(ServerType).where(ServerType.id == server_type.id).values(paused=on))
        woken = [server_type.id]
    else:
        session.execute(delete(QueueFlag).where(QueueFlag.name == PAUSED))
        if on:
            session.execute(
                insert(QueueFlag), {"name": PAUSED, "value": actor, "updated_at": utcnow()}
            )
        woken = list(session.scalars(select(ServerType.id)))
    events.log_event(
        session,
        events.DISPATCH_PAUSED if on else events.DISPATCH_RESUMED,
        message=f"{what} {'paused' if on else 'resumed'} by {actor}",
    )
    return [] if on else woken


@dataclass(frozen=True)
class Stopped:
    queue_paused: bool
    paused_types: list[str]
    drained_servers: list[str]


def stopped(session: Session) -> Stopped:
    """What dispatch is stopped for now (status, admin pages, metrics)."""
    return Stopped(
        queue_paused=session.scalar(select(QueueFlag.name).where(QueueFlag.name == PAUSED))
        is not None,
        paused_types=list(
            session.scalars(
                select(ServerType.name).where(ServerType.paused.is_(True)).order_by(ServerType.name)
            )
        ),
        drained_servers=list(
            session.scalars(
                select(Server.name).where(Server.drained.is_(True)).order_by(Server.name)
            )
        ),
    )
