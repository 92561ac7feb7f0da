"""Grading servers and server tokens once added: change, remove, revoke, rotate.

Draining a server is :mod:`~graderqueue.registry.operations`. The rules of
:mod:`~graderqueue.registry.lifecycle` hold here too: checked before written,
one event naming who acted (``actor``: "cli" or "admin NAME").

A server removed (alone, or with the token it registered through) gives
back the jobs it held: they are queued again at once, keeping their place
in line and without a failure counted against them, since the operator,
not the job, ended their grading. The server's result for them would be
refused anyway.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest
from graderqueue.identity.servers import hash_token
from graderqueue.queue import states
from graderqueue.quoting import quote
from graderqueue.registry import actions
from graderqueue.registry.lifecycle import log_change
from graderqueue.store import events
from graderqueue.store.models import Job, JobStatus, Server, ServerToken, ServerType


@dataclass(frozen=True)
class ServerChanges:
    """What to change on a server or a server token; ``None`` leaves a field as it is."""

    wakeup_secret: str | None = None  # "" removes it: plain ``wakeup`` datagrams
    wakeup_url: str | None = None  # "": never woken, it polls on its own
    max_jobs: int | None = None  # 0: no limit
    type_name: str | None = None
    # A new client certificate (one renewed, or a new CA): either may be left None.
    ssl_serial: str | None = None
    ssl_dn: str | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def _certificate(session: Session, server: Server, changes: ServerChanges) -> list[str]:
    if changes.ssl_serial is None and changes.ssl_dn is None:
        return []
    if server.token_id is not None:
        raise BadRequest(
            f"Server {quote(server.name)} registered itself with a server token: it has no "
            "certificate to change."
        )
    serial, dn, key = actions.certificate_identity(
        session,
        changes.ssl_serial if changes.ssl_serial is not None else server.ssl_serial or "",
        changes.ssl_dn if changes.ssl_dn is not None else server.ssl_dn or "",
        server.id,
    )
    if key == server.ssl_key:
        return []
    server.ssl_serial, server.ssl_dn, server.ssl_key = serial, dn, key
    return [f"certificate serial {serial}, issuer {quote(dn)}"]


def update_server(
    session: Session, name: str, changes: ServerChanges, *, actor: str
) -> tuple[Server, list[str]]:
    """Change a server; returns it and what changed (never the secret itself)."""
    server = actions.server_by_name(session, name)
    said: list[str] = []
    if changes.wakeup_secret is not None:
        secret = actions.check_wakeup_secret(changes.wakeup_secret)
        if secret != server.wakeup_secret:
            server.wakeup_secret = secret
            said.append("wake-ups signed with a new secret" if secret else "plain wake-ups")
    if changes.wakeup_url is not None:
        url = actions.check_wakeup_url(changes.wakeup_url.strip())
        if url != server.wakeup_url:
            said.append(f"wake-up URL {quote(url or 'none')} (was {quote(server.wakeup_url)})")
            server.wakeup_url = url
            server.wakeup_fails = 0  # a new address has not failed yet
    if changes.max_jobs is not None:
        most = actions.check_max_jobs(changes.max_jobs)
        if most != server.max_concurrent_jobs:
            said.append(f"max jobs {most or 'no limit'} (was {server.max_concurrent_jobs})")
            server.max_concurrent_jobs = most
    if changes.type_name is not None:
        stype = actions.type_by_name(session, changes.type_name)
        if stype.id != server.type_id:
            old = session.get(ServerType, server.type_id)
            said.append(f"type {stype.name} (was {old.name if old else server.type_id})")
            server.type_id = stype.id
    said += _certificate(session, server, changes)
    if said:
        session.flush()
        events.log_event(
            session,
            events.SERVER_UPDATED,
            server_id=server.id,
            message=f"server {server.name}: {'; '.join(said)}; by {actor}",
        )
    return server, said


def update_server_token(
    session: Session, name: str, changes: ServerChanges, *, actor: str
) -> tuple[ServerToken, int]:
    """Change a token's wake-up secret and that of the servers registered with it;
    returns (token, servers changed).

    Those servers got their settings from the token when they registered,
    and run with the same configuration: a secret removed because they run
    the original grading server must be removed from them too.
    """
    others = [f.name for f in fields(changes) if f.name != "wakeup_secret"]
    if changes.wakeup_secret is None or any(getattr(changes, o) is not None for o in others):
        raise BadRequest("Only a server token's wake-up secret can be changed.")
    token = actions.server_token_by_name(session, name)
    registered = list(session.scalars(select(Server).where(Server.token_id == token.id)))
    secret = actions.check_wakeup_secret(changes.wakeup_secret)
    token.wakeup_secret = secret
    for server in registered:
        server.wakeup_secret = secret
    session.flush()
    state = "signed wake-ups" if secret else "plain wake-ups"
    log_change(
        session,
        events.SERVER_TOKEN_UPDATED,
        f"server token {token.name} and its {len(registered)} server(s): {state}",
        actor,
    )
    return token, len(registered)


# -- removing servers, revoking and rotating tokens --------------------------------


@dataclass
class Released:
    """Servers removed, the jobs they held (queued again) and those jobs' types, to wake."""

    servers: list[str] = field(default_factory=list)
    job_ids: list[int] = field(default_factory=list)
    type_ids: set[int] = field(default_factory=set)


def held_jobs(session: Session, server_ids: list[int]) -> list[int]:
    """Jobs these servers are grading now (a removal queues them again)."""
    if not server_ids:
        return []
    return list(
        session.scalars(
            select(Job.id)
            .where(Job.sent_to.in_(server_ids), Job.status == JobStatus.SENT)
            .order_by(Job.id)
        )
    )


def held_counts(session: Session) -> list[tuple[int, int]]:
    """(server id, jobs it is grading) for every server holding some."""
    return [
        (server_id, n)
        for server_id, n in session.execute(
            select(Job.sent_to, func.count())
            .where(Job.status == JobStatus.SENT, Job.sent_to.is_not(None))
            .group_by(Job.sent_to)
        )
    ]


def _remove(session: Session, server: Server, why: str, released: Released) -> None:
    held = held_jobs(session, [server.id])
    for job_id in held:
        states.requeue(session, job_id, count_failure=False)
        released.type_ids.update(states.type_ids_of(session, job_id))
    events.log_many(
        session,
        events.RELEASED,
        [
            {"job_id": j, "server_id": server.id, "message": f"queued again: server {why}"}
            for j in held
        ],
    )
    # Finished jobs it graded forget it, as the hourly purge does (its name stays in events).
    session.execute(
        update(Job)
        .where(Job.sent_to == server.id)
        .values(sent_to=None)
        .execution_options(synchronize_session=False)
    )
    events.log_event(
        session,
        events.SERVER_REMOVED,
        server_id=server.id,
        message=f"{why}; {len(held)} job(s) it held queued again",
    )
    session.execute(delete(Server).where(Server.id == server.id))
    released.servers.append(server.name)
    released.job_ids += held


def remove_server(session: Session, name: str, *, actor: str) -> Released:
    """Delete a server; the jobs it held are queued again (wake their types after commit).

    A server registered by a token registers again at its next request
    while the token is valid: revoke the token to keep it out.
    """
    server = actions.server_by_name(session, name)
    released = Released()
    _remove(session, server, f"{server.name} removed by {actor}", released)
    return released


def registered_servers(session: Session, token_name: str) -> list[Server]:
    token = actions.server_token_by_name(session, token_name)
    return list(
        session.scalars(select(Server).where(Server.token_id == token.id).order_by(Server.name))
    )


def revoke_token(session: Session, name: str, *, actor: str) -> Released:
    """Delete a server token and every server registered through it.

    The token stops working at the next request, and so do those servers,
    whose only credential it was; the jobs they held are queued again.
    """
    token = actions.server_token_by_name(session, name)
    released = Released()
    for server in registered_servers(session, token.name):
        why = f"{server.name} removed with server token {token.name}, revoked by {actor}"
        _remove(session, server, why, released)
    session.execute(delete(ServerToken).where(ServerToken.id == token.id))
    log_change(
        session,
        events.SERVER_TOKEN_REVOKED,
        f"server token {token.name} revoked; servers removed: "
        f"{', '.join(released.servers) or 'none'}",
        actor,
    )
    return released


def rotate_token(session: Session, name: str, *, actor: str) -> actions.NewToken:
    """A new secret for a token; the old one stops working at once.

    The servers registered through it keep their registration (and the jobs
    they hold): each authenticates again once it is given the new token.
    """
    token = actions.server_token_by_name(session, name)
    secret = secrets.token_urlsafe(32)
    token.token_hash = hash_token(secret)
    session.flush()
    log_change(session, events.SERVER_TOKEN_ROTATED, f"server token {token.name} rotated", actor)
    return actions.NewToken(record=token, token=secret)


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    type_name: str
    max_jobs: int
    signed_wakeups: bool
    created_at: datetime
    servers: int  # registered through it


def token_rows(session: Session) -> list[TokenRow]:
    """Every server token, with how many servers it registered (never the token itself)."""
    counts = dict(
        session.execute(
            select(Server.token_id, func.count())
            .where(Server.token_id.is_not(None))
            .group_by(Server.token_id)
        ).all()
    )
    rows = session.execute(
        select(ServerToken, ServerType.name)
        .join(ServerType, ServerType.id == ServerToken.type_id)
        .order_by(ServerToken.name)
    ).all()
    return [
        TokenRow(
            id=token.id,
            name=token.name,
            type_name=type_name,
            max_jobs=token.max_concurrent_jobs,
            signed_wakeups=bool(token.wakeup_secret),
            created_at=token.created_at,
            servers=counts.get(token.id, 0),
        )
        for token, type_name in rows
    ]
