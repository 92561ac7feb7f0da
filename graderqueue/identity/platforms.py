"""Who sent an ``/api.php`` request: a platform's token, or one of the other ways in.

The original's admin-interface ``token`` is no longer a way in: the admin
pages send jobs and wake servers themselves, inside a logged-in session
with its CSRF token, so a second credential on ``/api.php`` would only widen
the door (docs/LIFECYCLE.md). A request with only ``token`` gets "No valid
authentication provided.". A disabled platform gets the same answer.

:func:`identify` returns the request's fields and a :class:`Sender`; every
failure is a :class:`PlatformAuthError` or :class:`TokenError` (errorcode 2),
raised before anything is stored. The expensive parts (RSA, password hashes)
run outside any database transaction, so they never hold a lock; lookups use
a short read-only transaction.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.errors import PlatformAuthError, TokenError
from graderqueue.identity import remote_users
from graderqueue.protocol import freshness, tokens
from graderqueue.protocol.keys import QueueKeys
from graderqueue.registry.view import PlatformInfo, RegistryView
from graderqueue.store.models import Platform

INTERFACE = "interface"


@dataclass(frozen=True)
class Sender:
    platform_id: int | None
    name: str
    via: str  # "platform", "interface", "remote:<user>"
    restrict_paths: str = ""
    force_tag_id: int | None = None
    lenient_integers: bool = False
    # A fresh token's jti, to record in the request's own transaction.
    replay: freshness.Replay | None = None

    def record(self, session: Session) -> None:
        """Record what must be recorded with the request (a fresh token's jti)."""
        if self.replay is not None:
            freshness.remember(session, self.replay)


def _platform_sender(platform: PlatformInfo, replay: freshness.Replay | None = None) -> Sender:
    return Sender(
        platform_id=platform.id,
        name=platform.name,
        via="platform",
        restrict_paths=platform.restrict_paths,
        force_tag_id=platform.force_tag_id,
        lenient_integers=platform.lenient_integers,
        replay=replay,
    )


def usable_platform(view: RegistryView, name: str, *, reload: bool = False) -> PlatformInfo | None:
    """The platform called ``name`` (None if unknown); refused if it is disabled.

    A platform unknown or disabled in the cached view is looked up again, so
    one just added or enabled works at once. A disabled platform gets the
    protocol's plain authentication error, before any RSA work.
    """
    platform = view.platform(name, reload=reload)
    if not reload and (platform is None or platform.disabled):
        platform = view.platform(name, reload=True)
    if platform is not None and platform.disabled:
        raise PlatformAuthError()
    return platform


def open_platform_token(
    view: RegistryView,
    keys: QueueKeys,
    settings: Settings,
    raw_token: str,
    platform_name: str,
) -> tuple[dict[str, Any], Sender]:
    """Decrypt and verify a platform's request token."""
    tokens.check_size(raw_token, settings.token_max_bytes)
    platform = usable_platform(view, platform_name)
    if platform is None:
        raise PlatformAuthError(f"Unknown platform `{platform_name[:100]}`.")
    queue_key = keys.for_kid(tokens.compact_header(raw_token, 5).get("kid"))
    inner = tokens.decrypt(raw_token, queue_key.private, settings.token_max_bytes)
    kid = tokens.signer_kid(inner)
    if kid is not None and kid != platform.name:
        raise TokenError("Invalid token: the signature's kid does not match sPlatform.")
    try:
        payload = tokens.verify(inner, platform.keys)
    except TokenError:
        # Maybe a key added a moment ago: look again before refusing.
        platform = usable_platform(view, platform_name, reload=True)
        if platform is None:
            raise
        payload = tokens.verify(inner, platform.keys)
    replay = freshness.check(platform, payload, settings)
    return payload, _platform_sender(platform, replay)


def identify(
    view: RegistryView,
    keys: QueueKeys,
    settings: Settings,
    form: Mapping[str, str],
) -> tuple[dict[str, Any], Sender]:
    """The request fields and their sender, from whichever credentials the form has."""
    db = view.db
    if form.get("sToken") and form.get("sPlatform"):
        return open_platform_token(view, keys, settings, form["sToken"], form["sPlatform"])

    if form.get("rRequest") is not None:
        username = form.get("rUsername", "")
        if not remote_users.authenticate(db, username, form.get("rPassword", "")):
            raise PlatformAuthError("Username/password invalid.")
        try:
            request = json.loads(form["rRequest"])
        except (ValueError, RecursionError) as exc:
            raise PlatformAuthError("rRequest is not JSON.") from exc
        if not isinstance(request, dict):
            raise PlatformAuthError("rRequest is not a JSON object.")
        return request, Sender(platform_id=None, name=username, via=f"remote:{username}")

    password = form.get("debugPassword")
    if (
        settings.debug_password
        and password
        and hmac.compare_digest(password.encode(), settings.debug_password.encode())
    ):
        with db.reading() as session:
            name = session.scalar(select(Platform.name).where(Platform.id == 1))
        platform = usable_platform(view, name) if name is not None else None
        if platform is None:
            raise PlatformAuthError("Debug requests act as platform 1, which does not exist.")
        return dict(form), _platform_sender(platform)

    raise PlatformAuthError()
