"""Optional freshness of platform tokens, against replays.

A platform marked ``require_fresh`` must send either the standard claims
``exp`` (and/or ``iat``) with a ``jti``, or the protocol's ``date`` field
(``dd-mm-YYYY``) within a day. A ``jti`` is accepted once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .config import Settings
from .errors import TokenError
from .models import Platform, SeenTokenId, utcnow

CLOCK_SKEW_SEC = 60


def _number(payload: dict[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"Invalid token: `{key}` must be a number.")
    return float(value)


def check(
    session: Session, platform: Platform, payload: dict[str, Any], settings: Settings
) -> None:
    """Refuse stale or replayed tokens from platforms that asked for freshness.

    ``exp``/``nbf`` are honoured from any platform that sends them.
    """
    now = time.time()
    exp = _number(payload, "exp")
    if exp is not None and now > exp + CLOCK_SKEW_SEC:
        raise TokenError("Invalid token: expired.")
    nbf = _number(payload, "nbf")
    if nbf is not None and now < nbf - CLOCK_SKEW_SEC:
        raise TokenError("Invalid token: not valid yet.")
    if not platform.require_fresh:
        return

    iat = _number(payload, "iat")
    jti = payload.get("jti")
    if exp is not None or iat is not None:
        if iat is not None and abs(now - iat) > settings.token_max_age_sec:
            raise TokenError("Invalid token: issued too long ago.")
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            raise TokenError("Invalid token: a fresh token needs a `jti`.")
        horizon = exp if exp is not None else iat + settings.token_max_age_sec  # type: ignore[operator]
        _remember(session, platform.id, jti, horizon)
        return

    date = payload.get("date")
    if not isinstance(date, str):
        raise TokenError("Invalid token: this platform must send exp/iat and jti, or date.")
    try:
        sent = datetime.strptime(date, "%d-%m-%Y").replace(tzinfo=UTC)
    except ValueError as exc:
        raise TokenError("Invalid token: `date` must be dd-mm-YYYY.") from exc
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if abs((today - sent).days) > 1:
        raise TokenError("Invalid token: `date` is not within a day.")


def _remember(session: Session, platform_id: int, jti: str, horizon: float) -> None:
    expires = datetime.fromtimestamp(horizon + CLOCK_SKEW_SEC, UTC).replace(tzinfo=None)
    session.execute(delete(SeenTokenId).where(SeenTokenId.expires_at < utcnow()))
    try:
        with session.begin_nested():
            session.add(SeenTokenId(platform_id=platform_id, jti=jti, expires_at=expires))
    except IntegrityError as exc:
        raise TokenError("Invalid token: replayed (this jti was already used).") from exc


def max_age() -> timedelta:
    return timedelta(days=1)
