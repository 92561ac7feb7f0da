"""Optional freshness of platform tokens, against replays.

A platform marked ``require_fresh`` must send either the standard claims
``exp`` (and/or ``iat``) with a ``jti``, or the protocol's ``date`` field
(``dd-mm-YYYY``) within a day. A ``jti`` is accepted once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.errors import TokenError

if TYPE_CHECKING:
    from graderqueue.registry.view import PlatformInfo
from graderqueue.store.models import SeenTokenId, utcnow

# The latest time a token may name: 2100-01-01 UTC. Times past it are no
# time at all but an attack on the arithmetic: 1e300 or a 400-digit integer
# overflows float() and datetime, and JSON's Infinity/NaN compare oddly.
MAX_UNIX_TIME = 4_102_444_800


def unix_time(payload: dict[str, Any], key: str) -> float | None:
    """A unix time claim (``exp``, ``iat``, ``nbf``): a finite number from 1970 to 2100."""
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"Invalid token: `{key}` must be a number.")
    # Compare before float(): float() of a huge int raises OverflowError.
    if isinstance(value, float) and not math.isfinite(value):
        raise TokenError(f"Invalid token: `{key}` must be a finite number.")
    if not 0 <= value <= MAX_UNIX_TIME:
        raise TokenError(f"Invalid token: `{key}` must be a unix time between 1970 and 2100.")
    return float(value)


@dataclass(frozen=True)
class Replay:
    """A ``jti`` to record in the request's transaction (refused if seen before)."""

    platform_id: int
    jti: str
    horizon: float  # unix time after which the jti may be forgotten


def check(platform: PlatformInfo, payload: dict[str, Any], settings: Settings) -> Replay | None:
    """Refuse stale tokens from platforms that asked for freshness; no database access.

    ``exp``/``nbf`` are honoured from any platform that sends them. Returns the
    jti to record with :func:`remember`, when there is one.
    """
    now = time.time()
    skew = settings.token_clock_skew_sec
    exp = unix_time(payload, "exp")
    if exp is not None and now > exp + skew:
        raise TokenError("Invalid token: expired.")
    nbf = unix_time(payload, "nbf")
    if nbf is not None and now < nbf - skew:
        raise TokenError("Invalid token: not valid yet.")
    if not platform.require_fresh:
        return None

    iat = unix_time(payload, "iat")
    jti = payload.get("jti")
    if exp is not None or iat is not None:
        if iat is not None and abs(now - iat) > settings.token_max_age_sec:
            raise TokenError("Invalid token: issued too long ago.")
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            raise TokenError("Invalid token: a fresh token needs a `jti`.")
        horizon = exp if exp is not None else iat + settings.token_max_age_sec  # type: ignore[operator]
        # Kept as long as a clock a little behind would still take the token.
        return Replay(platform.id, jti, horizon + skew)

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
    return None


def remember(session: Session, replay: Replay) -> None:
    """Record a fresh token's jti; a jti seen before is a replay."""
    expires = datetime.fromtimestamp(replay.horizon, UTC).replace(tzinfo=None)
    session.execute(delete(SeenTokenId).where(SeenTokenId.expires_at < utcnow()))
    try:
        with session.begin_nested():
            session.add(
                SeenTokenId(platform_id=replay.platform_id, jti=replay.jti, expires_at=expires)
            )
    except IntegrityError as exc:
        raise TokenError("Invalid token: replayed (this jti was already used).") from exc
