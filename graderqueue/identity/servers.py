"""Who is calling: grading servers (client certificate or server token).

Client-certificate facts come from the TLS proxy in request headers, and are
believed only when the request comes straight from a configured proxy
address: anyone else could send the same headers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from graderqueue.errors import AuthenticationError
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


def normalize_serial(serial: str) -> str:
    """Hex serial, case-, colon- and leading-zero-insensitive."""
    text = serial.strip().lower().replace(":", "").replace(" ", "")
    if text.startswith("0x"):
        text = text[2:]
    if not text or not re.fullmatch(r"[0-9a-f]+", text):
        raise ValueError(f"not a hexadecimal serial: {serial!r}")
    return text.lstrip("0") or "0"


_ATTR_ALIASES = {"e": "emailaddress", "email": "emailaddress", "street": "street"}


def _split_rfc2253(dn: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in dn:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char in ",;":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    """Undo RFC 2253 escaping; ``\\C3\\9C`` hex pairs are UTF-8 bytes."""
    value = value.strip()
    out = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if re.fullmatch(r"[0-9a-fA-F]{2}", pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode())
            i += 2
            continue
        out.extend(char.encode())
        i += 1
    return out.decode("utf-8", errors="replace")


def normalize_dn(dn: str) -> str:
    """Issuer DN in one form, whether given as RFC 2253 or as ``/C=../O=..``.

    RFC 2253 lists the most specific part first, the slash form the root
    first; both become the slash form with lower-case attribute names.
    """
    text = dn.strip()
    if not text:
        raise ValueError("empty DN")
    if text.startswith("/"):
        # A "/" inside a value is not a separator: split only before "attr=".
        rdns = [part for part in re.split(r"/(?=[A-Za-z][A-Za-z0-9.-]*=)", text[1:]) if part]
    else:
        rdns = list(reversed([part for part in _split_rfc2253(text) if part.strip()]))
    canonical = []
    for rdn in rdns:
        if "=" not in rdn:
            raise ValueError(f"not a DN: {dn!r}")
        attr, value = rdn.split("=", 1)
        attr = attr.strip().lower()
        attr = _ATTR_ALIASES.get(attr, attr)
        canonical.append(f"{attr}={_unescape(value)}")
    return "/" + "/".join(canonical)


def cert_key(serial: str, dn: str) -> str:
    """The servers.ssl_key of a certificate identity (unique, fits an index)."""
    ident = normalize_serial(serial) + "\n" + normalize_dn(dn)
    return hashlib.sha256(ident.encode()).hexdigest()


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


def _identity(session: Session, *where: object) -> Authenticated | None:
    row = session.execute(_IDENTITY.where(*where)).first()  # type: ignore[arg-type]
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
    return _identity(session, _SERVERS.c.ssl_key == key)


def server_by_token(
    session: Session, caller: Caller, trusted_proxies: Sequence[str]
) -> Authenticated | None:
    """A server token names a type; each new address registers a server of its own."""
    token = caller.server_token
    if not token or len(token) > TOKEN_MAX:
        return None
    record = session.execute(
        select(_TOKENS).where(_TOKENS.c.token_hash == hash_token(token))
    ).first()
    if record is None:
        return None
    ip = client_ip(caller, trusted_proxies)
    known = _identity(session, _SERVERS.c.token_id == record.id, _SERVERS.c.ip == ip)
    if known is not None:
        return known
    host = f"[{ip}]" if ":" in ip else ip
    server = Server(
        name=f"{record.name}-{ip}",
        type_id=record.type_id,
        token_id=record.id,
        ip=ip,
        wakeup_url=f"udp://{host}:{WAKEUP_PORT}",
        wakeup_secret=record.wakeup_secret,
        max_concurrent_jobs=record.max_concurrent_jobs,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(server)
    except IntegrityError:
        # Another request from the same address registered it a moment ago.
        known = _identity(session, _SERVERS.c.token_id == record.id, _SERVERS.c.ip == ip)
        if known is None:
            raise
        return known
    events.log_event(
        session, events.SERVER_REGISTERED, server_id=server.id, message=f"token {record.name}"
    )
    return Authenticated(server.id, server.name, server.type_id, server.max_concurrent_jobs)


def authenticate_server(
    session: Session, caller: Caller, trusted_proxies: Sequence[str]
) -> Authenticated:
    """The calling grading server, or :class:`AuthenticationError` (errorcode 3)."""
    server = server_by_certificate(session, caller, trusted_proxies)
    if server is None:
        server = server_by_token(session, caller, trusted_proxies)
    if server is None:
        raise AuthenticationError()
    return server
