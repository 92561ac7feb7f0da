"""Who calls the JSON API: an operator's API token, or a platform's signed bearer token.

``Authorization: Bearer <token>`` carries either:

- an **API token** made by ``graderqueue api-token add`` (``gqa_`` and 43
  URL-safe characters); only its SHA-256 is stored, and it sees everything
  (scope ``read``) or may also act (scope ``write``);
- a **platform's compact JWS**, RS512, signed with a key the platform has
  registered: header ``kid`` = the platform's name; claims ``iss`` = the
  same name, ``aud`` = the queue's key name, ``iat``, ``exp`` at most
  ``API_TOKEN_MAX_LIFETIME_SEC`` after ``iat``, and a ``jti`` used once. A
  platform sees and controls its own jobs only. No new secret to hand out.
  A disabled platform's tokens are refused.

Every refusal is :class:`~graderqueue.errors.ApiAuthError` (HTTP 401); the
RSA check runs outside any transaction, and a jti is spent only in the
transaction of the request it authenticates.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jwcrypto import jwk, jws
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.errors import ApiAuthError, BadRequest, NotFound, TokenError
from graderqueue.identity.servers import hash_token
from graderqueue.protocol import freshness
from graderqueue.quoting import quote
from graderqueue.registry.view import RegistryView
from graderqueue.store.db import Database
from graderqueue.store.models import ApiToken, utcnow

SCOPES = ("read", "write")
TOKEN_PREFIX = "gqa_"
API_TOKEN_MAX_LIFETIME_SEC = 300
BEARER_MAX = 16 * 1024
NEEDS_TIMES = "The bearer token needs numeric iat and exp (unix times, 1970 to 2100)."
NAME_MAX = 255


@dataclass(frozen=True)
class ApiCaller:
    """The authenticated caller of one API request."""

    name: str
    platform_id: int | None  # None: an operator
    scope: str  # "read" or "write"; platforms always "write" on their own jobs
    replay: freshness.Replay | None = None  # a platform token's jti, spent with the request

    @property
    def is_operator(self) -> bool:
        return self.platform_id is None

    @property
    def key(self) -> str:
        """Who this is, as a key: one caller's Idempotency-Keys never meet another's."""
        return f"operator:{self.name}" if self.is_operator else f"platform:{self.platform_id}"

    @property
    def label(self) -> str:
        """Who acted, for the event log."""
        return f"operator {self.name}" if self.is_operator else f"platform {self.name}"

    def spend(self, session: Session) -> None:
        """Record the platform token's jti (a second use is then a replay)."""
        if self.replay is None:
            return
        try:
            freshness.remember(session, self.replay)
        except TokenError as exc:
            raise ApiAuthError("The bearer token was already used (its jti).") from exc


# -- operators' API tokens --------------------------------------------------------


def add_token(session: Session, name: str, scope: str) -> str:
    """Make an API token; returns the token, which is not stored and not shown again."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise BadRequest(f"Invalid API token name {quote(name)}.")
    if scope not in SCOPES:
        raise BadRequest(f"Invalid scope {quote(scope)}: read or write.")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise BadRequest(f"API token {quote(name)} already exists.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, scope=scope, token_hash=hash_token(token)))
    session.flush()
    return token


def revoke_token(session: Session, name: str) -> None:
    gone = session.execute(delete(ApiToken).where(ApiToken.name == name.strip()))
    if not gone.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"No API token {quote(name)}.")


# How stale an API token's ``last_used_at`` may get: writing it on every
# request cost a commit per request (4 ms on MariaDB, the whole of a list's
# time at 1k jobs), for a figure operators read in days.
LAST_USED_GRANULARITY = timedelta(minutes=1)


def _operator(db: Database, token: str) -> ApiCaller:
    with db.reading() as session:
        row = session.execute(
            select(ApiToken.id, ApiToken.name, ApiToken.scope, ApiToken.last_used_at).where(
                ApiToken.token_hash == hash_token(token)
            )
        ).first()
    if row is None:
        raise ApiAuthError("Unknown or revoked API token.")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_GRANULARITY:
        with db.transaction() as session:
            session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return ApiCaller(name=row.name, platform_id=None, scope=row.scope)


# -- platforms' signed bearer tokens ----------------------------------------------


def _header(token: str) -> dict:
    try:
        protected = jws.base64url_decode(token.split(".", 1)[0])
        header = json.loads(protected)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiAuthError("Malformed bearer token.") from exc
    if not isinstance(header, dict):
        raise ApiAuthError("Malformed bearer token.")
    return header


def _claims_checked(claims: object, name: str, settings: Settings, now: float) -> dict:
    if not isinstance(claims, dict):
        raise ApiAuthError("The bearer token's payload is not a JSON object.")
    if claims.get("iss") != name:
        raise ApiAuthError("The bearer token's iss must be the platform's name (its kid).")
    if claims.get("aud") != settings.key_name:
        raise ApiAuthError(f"The bearer token's aud must be {quote(settings.key_name)}.")
    try:
        # The protocol's one rule for time claims: finite unix times, 1970 to 2100.
        iat, exp = freshness.unix_time(claims, "iat"), freshness.unix_time(claims, "exp")
    except TokenError as exc:
        raise ApiAuthError(NEEDS_TIMES) from exc
    if iat is None or exp is None:
        raise ApiAuthError(NEEDS_TIMES)
    skew = settings.token_clock_skew_sec
    if exp - iat > API_TOKEN_MAX_LIFETIME_SEC:
        raise ApiAuthError(
            f"The bearer token lives too long: exp at most {API_TOKEN_MAX_LIFETIME_SEC} s "
            "after iat."
        )
    if now > exp + skew or now < iat - skew:
        raise ApiAuthError("The bearer token is expired or not valid yet.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise ApiAuthError("The bearer token needs a jti (at most 255 characters).")
    return claims


def _platform(view: RegistryView, settings: Settings, token: str) -> ApiCaller:
    header = _header(token)
    if header.get("alg") != "RS512":
        raise ApiAuthError("The bearer token must be signed with RS512.")
    name = header.get("kid")
    if not isinstance(name, str) or not name:
        raise ApiAuthError("The bearer token's kid must name the platform.")
    platform = view.platform(name)
    if platform is None or platform.disabled:  # maybe added or enabled a moment ago
        platform = view.platform(name, reload=True)
    if platform is None:
        raise ApiAuthError("Unknown platform.")
    if platform.disabled:
        raise ApiAuthError()  # `platform disable`: no more requests, before any RSA work
    signed = jws.JWS()
    try:
        signed.deserialize(token)
    except jws.InvalidJWSObject as exc:
        raise ApiAuthError("Malformed bearer token.") from exc
    claims = None
    for key in platform.keys:
        try:
            signed.verify(key, alg="RS512")
            claims = json.loads(signed.payload)
            break
        except (jws.InvalidJWSSignature, jwk.InvalidJWKType, ValueError):
            continue
    if claims is None:
        raise ApiAuthError("The bearer token's signature does not verify with the platform's keys.")
    checked = _claims_checked(claims, name, settings, time.time())
    expires = datetime.fromtimestamp(checked["exp"] + settings.token_clock_skew_sec, UTC)
    replay = freshness.Replay(platform.id, checked["jti"], expires.timestamp())
    return ApiCaller(name=name, platform_id=platform.id, scope="write", replay=replay)


def authenticate(
    db: Database, view: RegistryView, settings: Settings, authorization: str | None
) -> ApiCaller:
    """The caller named by an ``Authorization`` header, or :class:`ApiAuthError`.

    A platform's signature is checked with no transaction open (RSA is slow);
    an API token is looked up, and its last use noted, in a short one.
    """
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiAuthError("Send Authorization: Bearer <API token or platform JWS>.")
    if len(token) > BEARER_MAX:
        raise ApiAuthError("The bearer token is too large.")
    if token.startswith(TOKEN_PREFIX):
        return _operator(db, token)
    if token.count(".") == 2:
        return _platform(view, settings, token)
    raise ApiAuthError("Unknown kind of bearer token.")
