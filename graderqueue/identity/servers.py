"""Who is calling: grading servers (client certificate or server token).

Client-certificate facts come from the TLS proxy in request headers, and are
believed only when the request comes straight from a configured proxy
address: anyone else could send the same headers.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from graderqueue.errors import AuthenticationError
from graderqueue.identity.certificates import cert_key
from graderqueue.store import events
from graderqueue.store.models import Server, ServerToken, utcnow

VERIFY_HEADER = "X-SSL-Client-Verify"
SERIAL_HEADER = "X-SSL-Client-Serial"
ISSUER_HEADER = "X-SSL-Client-I-DN"

TOKEN_MAX = 512
WAKEUP_PORT = 20000


@dataclass(frozen=True)
class Caller:
    """The network facts of a request, as the web layer saw them."""

    remote_addr: str
    headers: Mapping[str, str]
    server_token: str | None


def _in_networks(addr: str, networks: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    for net in networks:
        try:
            if ip in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


def from_trusted_proxy(caller: Caller, trusted_proxies: Sequence[str]) -> bool:
    return bool(trusted_proxies) and _in_networks(caller.remote_addr, trusted_proxies)


def client_ip(caller: Caller, trusted_proxies: Sequence[str]) -> str:
    """The grading server's address: the proxy's word for it, only from a trusted proxy."""
    if from_trusted_proxy(caller, trusted_proxies):
        real = caller.headers.get("X-Real-IP", "").strip()
        if real and _is_ip(real):
            return real
        forwarded = caller.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        if forwarded and _is_ip(forwarded):
            return forwarded
    return caller.remote_addr


def _is_ip(text: str) -> bool:
    """Only an address becomes a server's name and wake-up URL, whatever a proxy sends."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Authenticated:
    """The calling grading server: what the endpoints need of it."""

    id: int
    name: str
    type_id: int
    max_concurrent_jobs: int


# Plain column lookups, not ORM objects: every poll and result authenticates,
# and loading a Server into the session would make each later statement of
# the request pay for an autoflush check.
_SERVERS = Server.__table__
_TOKENS = ServerToken.__table__
_IDENTITY = select(
    _SERVERS.c.id, _SERVERS.c.name, _SERVERS.c.type_id, _SERVERS.c.max_concurrent_jobs
)
# Built once with bound parameters: every poll and result runs them.
_BY_KEY = _IDENTITY.where(_SERVERS.c.ssl_key == bindparam("key"))
_BY_TOKEN_AND_IP = _IDENTITY.where(
    _SERVERS.c.token_id == bindparam("token_id"), _SERVERS.c.ip == bindparam("ip")
)
_TOKEN = select(_TOKENS).where(_TOKENS.c.token_hash == bindparam("token_hash"))


def _identity(session: Session, query: Any, values: dict[str, Any]) -> Authenticated | None:
    row = session.execute(query, values).first()
    return Authenticated(*row) if row is not None else None


def server_by_certificate(
    session: Session, caller: Caller, trusted_proxies: Sequence[str]
) -> Authenticated | None:
    if not from_trusted_proxy(caller, trusted_proxies):
        return None
    if caller.headers.get(VERIFY_HEADER, "") != "SUCCESS":
        return None
    try:
        key = cert_key(caller.headers.get(SERIAL_HEADER, ""), caller.headers.get(ISSUER_HEADER, ""))
    except ValueError:
        return None
    return _identity(session, _BY_KEY, {"key": key})


@dataclass(frozen=True)
class NewAddress:
    """A valid server token from an address with no server yet: one is to be registered."""

    token_id: int
    token_name: str
    type_id: int
    ip: str
    wakeup_secret: str
    max_concurrent_jobs: int


def server_by_token(
    session: Session, caller: Caller, trusted_proxies: Sequence[str]
) -> Authenticated | NewAddress | None:
    """A server token names a type; each address it is used from is a server of its own.

    Only reads: a token used from a new address gives :class:`NewAddress`,
    for :func:`register` to write.
    """
    token = caller.server_token
    if not token or len(token) > TOKEN_MAX:
        return None
    record = session.execute(_TOKEN, {"token_hash": hash_token(token)}).first()
    if record is None:
        return None
    ip = client_ip(caller, trusted_proxies)
    known = _identity(session, _BY_TOKEN_AND_IP, {"token_id": record.id, "ip": ip})
    if known is not None:
        return known
    return NewAddress(
        record.id,
        record.name,
        record.type_id,
        ip,
        record.wakeup_secret,
        record.max_concurrent_jobs,
    )


def register(session: Session, new: NewAddress) -> Authenticated:
    """Register the server a token was first used from (the token's settings, its address)."""
    host = f"[{new.ip}]" if ":" in new.ip else new.ip
    server = Server(
        name=f"{new.token_name}-{new.ip}",
        type_id=new.type_id,
        token_id=new.token_id,
        ip=new.ip,
        wakeup_url=f"udp://{host}:{WAKEUP_PORT}",
        wakeup_secret=new.wakeup_secret,
        max_concurrent_jobs=new.max_concurrent_jobs,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(server)
    except IntegrityError:
        # Another request from the same address registered it a moment ago.
        known = _identity(session, _BY_TOKEN_AND_IP, {"token_id": new.token_id, "ip": new.ip})
        if known is None:
            raise
        return known
    events.log_event(
        session, events.SERVER_REGISTERED, server_id=server.id, message=f"token {new.token_name}"
    )
    return Authenticated(server.id, server.name, server.type_id, server.max_concurrent_jobs)


def authenticate_server(
    session: Session, caller: Caller, trusted_proxies: Sequence[str]
) -> Authenticated:
    """The calling grading server, or :class:`AuthenticationError` (errorcode 3).

    The one write of authentication, as the protocol has it: a server token
    used from a new address registers a server there (in the caller's
    transaction, so a refused request registers nothing it keeps).
    """
    server = server_by_certificate(session, caller, trusted_proxies) or server_by_token(
        session, caller, trusted_proxies
    )
    if server is None:
        raise AuthenticationError()
    if isinstance(server, NewAddress):
        return register(session, server)
    return server
