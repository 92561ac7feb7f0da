"""Who sent an ``/api.php`` request: a platform's token, or one of the other ways in.

Returns the request's fields and a :class:`Sender`; every failure is a
:class:`PlatformAuthError` or :class:`TokenError` (errorcode 2), raised before
anything is stored.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import passwords, tokens
from .config import Settings
from .errors import PlatformAuthError, TokenError
from .keys import QueueKeys, parse_public_key
from .models import InterfaceToken, Platform, PlatformKey, RemoteUser, utcnow

INTERFACE = "interface"


@dataclass(frozen=True)
class Sender:
    platform_id: int | None
    name: str
    via: str  # "platform", "interface", "remote:<user>", "debug"
    restrict_paths: str = ""
    force_tag_id: int | None = None

    @property
    def is_interface(self) -> bool:
        return self.via == INTERFACE


def _platform_sender(platform: Platform) -> Sender:
    return Sender(
        platform_id=platform.id,
        name=platform.name,
        via="platform",
        restrict_paths=platform.restrict_paths or "",
        force_tag_id=platform.force_tag_id,
    )


def open_platform_token(
    session: Session,
    keys: QueueKeys,
    settings: Settings,
    raw_token: str,
    platform_name: str,
) -> tuple[dict[str, Any], Platform]:
    """Decrypt and verify a platform's request token."""
    tokens.check_size(raw_token, settings.token_max_bytes)
    platform = session.scalars(select(Platform).where(Platform.name == platform_name)).first()
    if platform is None:
        raise PlatformAuthError(f"Unknown platform `{platform_name[:100]}`.")
    queue_key = keys.for_kid(tokens.compact_header(raw_token, 5).get("kid"))
    inner = tokens.decrypt(raw_token, queue_key.private, settings.token_max_bytes)
    kid = tokens.signer_kid(inner)
    if kid is not None and kid != platform.name:
        raise TokenError("Invalid token: the signature's kid does not match sPlatform.")
    pems = session.scalars(
        select(PlatformKey.public_key).where(
            PlatformKey.platform_id == platform.id, PlatformKey.active.is_(True)
        )
    ).all()
    payload = tokens.verify(inner, [parse_public_key(pem) for pem in pems])
    from . import freshness  # platforms may demand fresh, unreplayed tokens

    freshness.check(session, platform, payload, settings)
    return payload, platform


def identify(
    session: Session,
    keys: QueueKeys,
    settings: Settings,
    form: Mapping[str, str],
) -> tuple[dict[str, Any], Sender]:
    """The request fields and their sender, from whichever credentials the form has."""
    if form.get("sToken") and form.get("sPlatform"):
        payload, platform = open_platform_token(
            session, keys, settings, form["sToken"], form["sPlatform"]
        )
        return payload, _platform_sender(platform)

    if form.get("rRequest") is not None:
        user = session.scalars(
            select(RemoteUser).where(RemoteUser.username == form.get("rUsername", ""))
        ).first()
        if user is None or not passwords.verify(user.password_hash, form.get("rPassword", "")):
            raise PlatformAuthError("Username/password invalid.")
        try:
            request = json.loads(form["rRequest"])
        except (ValueError, RecursionError) as exc:
            raise PlatformAuthError("rRequest is not JSON.") from exc
        if not isinstance(request, dict):
            raise PlatformAuthError("rRequest is not a JSON object.")
        return request, Sender(platform_id=None, name=user.username, via=f"remote:{user.username}")

    if form.get("token"):
        record = session.get(InterfaceToken, _token_hash(form["token"]))
        if record is None or record.expires_at < utcnow():
            raise PlatformAuthError(
                "Invalid token, please refresh the interface to get a new one.", errorcode=3
            )
        return dict(form), Sender(platform_id=None, name=INTERFACE, via=INTERFACE)

    if settings.debug_password and form.get("debugPassword"):
        if hmac.compare_digest(form["debugPassword"], settings.debug_password):
            platform = session.get(Platform, 1)
            if platform is None:
                raise PlatformAuthError("Debug requests act as platform 1, which does not exist.")
            return dict(form), _platform_sender(platform)

    raise PlatformAuthError()


def _token_hash(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def issue_interface_token(session: Session, lifetime: timedelta = timedelta(hours=1)) -> str:
    """A short-lived token for the admin interface's own API forms."""
    import secrets

    token = secrets.token_urlsafe(24)
    session.add(InterfaceToken(token_hash=_token_hash(token), expires_at=utcnow() + lifetime))
    return token
