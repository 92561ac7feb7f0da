"""Operator actions on tags, server types, platforms, servers and server tokens.

Shared by the CLI and the admin interface; each validates everything before
writing, so a refused action changes nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.dispatch.wakeups import parse_url
from graderqueue.errors import BadRequest, NotFound
from graderqueue.identity import certificates, servers
from graderqueue.protocol import keys
from graderqueue.quoting import quote
from graderqueue.store.models import (
    Platform,
    PlatformKey,
    Server,
    ServerToken,
    ServerType,
    Tag,
    TypeTag,
)

NAME_MAX = 255


def _name(value: str, what: str) -> str:
    name = value.strip()
    if not name or len(name) > NAME_MAX:
        raise BadRequest(f"Invalid {what} name {quote(value)}.")
    return name


def _unique(session: Session, model, name: str, what: str) -> None:  # type: ignore[no-untyped-def]
    if session.scalar(select(model.id).where(model.name == name)) is not None:
        raise BadRequest(f"{what} {quote(name)} already exists.")


_Named = TypeVar("_Named", Tag, ServerType, Platform, Server, ServerToken)


def _by_name(session: Session, model: type[_Named], name: str, missing: str) -> _Named:
    """The row of ``model`` called ``name``; :class:`NotFound` with ``missing`` otherwise."""
    row = session.scalars(select(model).where(model.name == name)).first()
    if row is None:
        raise NotFound(missing)
    return row


def tag_by_name(session: Session, name: str) -> Tag:
    # The protocol's own wording (PROTOCOL.md), not the CLI's.
    return _by_name(session, Tag, name, f"Tag `{name}` unrecognized.")


def type_by_name(session: Session, name: str) -> ServerType:
    return _by_name(session, ServerType, name, f"Server type {quote(name)} does not exist.")


def platform_by_name(session: Session, name: str) -> Platform:
    return _by_name(session, Platform, name, f"Platform {quote(name)} does not exist.")


def add_tag(session: Session, name: str) -> Tag:
    name = _name(name, "tag")
    if "," in name:
        raise BadRequest("A tag name cannot contain a comma.")
    _unique(session, Tag, name, "Tag")
    tag = Tag(name=name)
    session.add(tag)
    session.flush()
    return tag


def add_type(session: Session, name: str, tag_names: list[str]) -> ServerType:
    name = _name(name, "server type")
    _unique(session, ServerType, name, "Server type")
    tags = [tag_by_name(session, t) for t in tag_names]
    stype = ServerType(name=name)
    session.add(stype)
    session.flush()
    session.add_all(TypeTag(type_id=stype.id, tag_id=t.id) for t in tags)
    return stype


def type_tags(session: Session, type_id: int) -> list[str]:
    return list(
        session.scalars(
            select(Tag.name)
            .join(TypeTag, TypeTag.tag_id == Tag.id)
            .where(TypeTag.type_id == type_id)
        )
    )


def _public_key(pem: str) -> tuple[str, str]:
    pem = pem.strip() + "\n"
    try:
        keys.parse_public_key(pem)
        return pem, keys.fingerprint(pem)
    except keys.KeyProblem as exc:
        raise BadRequest(exc.message) from exc
    except ValueError as exc:
        raise BadRequest("Invalid public key.") from exc


def add_platform(
    session: Session,
    name: str,
    public_key_pem: str,
    *,
    return_url: str = "",
    restrict_paths: str = "",
    force_tag: str | None = None,
    require_fresh: bool = False,
) -> Platform:
    name = _name(name, "platform")
    _unique(session, Platform, name, "Platform")
    pem, fingerprint = _public_key(public_key_pem)
    if return_url and not return_url.startswith(("http://", "https://")):
        raise BadRequest("The return URL must start with http:// or https://.")
    forced = tag_by_name(session, force_tag).id if force_tag else None
    platform = Platform(
        name=name,
        return_url=return_url,
        restrict_paths=restrict_paths,
        force_tag_id=forced,
        require_fresh=require_fresh,
    )
    session.add(platform)
    session.flush()
    session.add(PlatformKey(platform_id=platform.id, public_key=pem, fingerprint=fingerprint))
    return platform


def add_platform_key(session: Session, platform_name: str, public_key_pem: str) -> PlatformKey:
    platform = platform_by_name(session, platform_name)
    pem, fingerprint = _public_key(public_key_pem)
    existing = session.scalars(
        select(PlatformKey).where(
            PlatformKey.platform_id == platform.id, PlatformKey.fingerprint == fingerprint
        )
    ).first()
    if existing is not None:
        existing.active = True
        return existing
    key = PlatformKey(platform_id=platform.id, public_key=pem, fingerprint=fingerprint)
    session.add(key)
    session.flush()
    return key


def remove_platform_key(
    session: Session, platform_name: str, fingerprint_prefix: str
) -> PlatformKey:
    platform = platform_by_name(session, platform_name)
    prefix = fingerprint_prefix.strip().lower()
    if len(prefix) < 8:
        raise BadRequest("Give at least 8 characters of the key's fingerprint.")
    matches = [
        k
        for k in session.scalars(
            select(PlatformKey).where(
                PlatformKey.platform_id == platform.id, PlatformKey.active.is_(True)
            )
        )
        if k.fingerprint.startswith(prefix)
    ]
    if len(matches) != 1:
        raise BadRequest(f"{len(matches)} active keys match {quote(prefix)}; need exactly one.")
    active = session.scalar(
        select(PlatformKey.id).where(
            PlatformKey.platform_id == platform.id,
            PlatformKey.active.is_(True),
            PlatformKey.id != matches[0].id,
        )
    )
    if active is None:
        raise BadRequest("Refusing to remove the platform's last active key.")
    matches[0].active = False
    return matches[0]


def check_wakeup_url(url: str) -> str:
    if url and parse_url(url) is None:
        raise BadRequest(f"Invalid wake-up URL {quote(url)}: expected udp://HOST:PORT.")
    return url


MAX_JOBS_MAX = 100_000  # far beyond any machine; keeps the column's integer safe


def check_max_jobs(value: int) -> int:
    if not 0 <= value <= MAX_JOBS_MAX:
        raise BadRequest(f"max jobs must be 0 (no limit) to {MAX_JOBS_MAX}.")
    return value


SECRET_MAX = 255  # the column's size


def check_wakeup_secret(secret: str) -> str:
    """A secret as given (a file's trailing newline removed); empty means none."""
    secret = secret.strip()
    if len(secret) > SECRET_MAX:
        raise BadRequest(f"The wake-up secret is too long (at most {SECRET_MAX} characters).")
    if any(c.isspace() or not c.isprintable() for c in secret):
        # graderserver reads it from a TOML string; keep both sides byte-identical.
        raise BadRequest("The wake-up secret must not contain spaces or control characters.")
    return secret


def certificate_identity(
    session: Session, ssl_serial: str, ssl_dn: str, server_id: int | None = None
) -> tuple[str, str, str]:
    """(serial, issuer DN, key) normalized; refused if a server other than
    ``server_id`` has that certificate."""
    try:
        serial, dn = certificates.normalize_serial(ssl_serial), certificates.normalize_dn(ssl_dn)
    except ValueError as exc:
        raise BadRequest(f"Invalid certificate identity: {exc}") from exc
    key = certificates.cert_key(ssl_serial, ssl_dn)
    holder = session.scalar(select(Server.id).where(Server.ssl_key == key))
    if holder is not None and holder != server_id:
        raise BadRequest("Another server already uses this certificate.")
    return serial, dn, key


def add_server(
    session: Session,
    name: str,
    type_name: str,
    *,
    ssl_serial: str,
    ssl_dn: str,
    wakeup_url: str = "",
    max_jobs: int = 1,
    wakeup_secret: str = "",
) -> Server:
    name = _name(name, "server")
    _unique(session, Server, name, "Server")
    stype = type_by_name(session, type_name)
    serial, dn, key = certificate_identity(session, ssl_serial, ssl_dn)
    server = Server(
        name=name,
        type_id=stype.id,
        ssl_serial=serial,
        ssl_dn=dn,
        ssl_key=key,
        wakeup_url=check_wakeup_url(wakeup_url),
        wakeup_secret=check_wakeup_secret(wakeup_secret),
        max_concurrent_jobs=check_max_jobs(max_jobs),
    )
    session.add(server)
    session.flush()
    return server


@dataclass(frozen=True)
class NewToken:
    record: ServerToken
    token: str  # shown once; only its hash is stored


def add_server_token(
    session: Session, name: str, type_name: str, *, max_jobs: int = 1, wakeup_secret: str = ""
) -> NewToken:
    name = _name(name, "server token")
    _unique(session, ServerToken, name, "Server token")
    stype = type_by_name(session, type_name)
    token = secrets.token_urlsafe(32)
    record = ServerToken(
        name=name,
        token_hash=servers.hash_token(token),
        type_id=stype.id,
        max_concurrent_jobs=check_max_jobs(max_jobs),
        wakeup_secret=check_wakeup_secret(wakeup_secret),
    )
    session.add(record)
    session.flush()
    return NewToken(record=record, token=token)


# -- finding servers and server tokens (changes: registry/fleet.py) ---------------


def server_by_name(session: Session, name: str) -> Server:
    return _by_name(session, Server, name, f"Server {quote(name)} does not exist.")


def server_token_by_name(session: Session, name: str) -> ServerToken:
    return _by_name(session, ServerToken, name, f"Server token {quote(name)} does not exist.")
