"""Sessions, login and CSRF for the admin interface.

The session is Flask's signed cookie, restricted to ``/admin``, http-only,
``SameSite=Lax`` and (unless configured off for local plain-HTTP use)
secure. It carries the account's session stamp, checked against the
database on every request: logout, a new password or removing the account
changes the stamp and so ends every session of that account at once, on
every node. Every POST must carry the session's CSRF token; ``SameSite``
alone does not protect older browsers or same-site attackers.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flask import Flask, Response, abort, g, redirect, request, session, url_for

from graderqueue.admin import accounts
from graderqueue.config import Settings
from graderqueue.identity import servers
from graderqueue.store.models import AdminUser
from graderqueue.web.answers import runtime

SESSION_LIFETIME = timedelta(hours=12)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# Pages anyone may see: the login form and the stylesheet it uses.
PUBLIC_ENDPOINTS = frozenset({"admin.login", "admin.static"})

# The interface loads nothing from elsewhere: no CDN, no inline script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def secret_key(settings: Settings) -> str:
    """The configured key, else one generated once into <instance>/secret_key (mode 0600).

    Several workers may start at once: the file is created exclusively, and
    whoever loses the race reads the winner's key.
    """
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.instance_path) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    for _ in range(50):  # a racing creator may not have written it yet
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it to have a new key made")


def configure(app: Flask, settings: Settings) -> None:
    app.secret_key = secret_key(settings)
    app.config.update(
        SESSION_COOKIE_NAME="graderqueue_admin",
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Refuse (400) a POST whose token is missing or is not this session's."""
    if request.method != "POST":
        return
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    expected = session.get("csrf") or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, description="Missing or wrong CSRF token: reload the page and try again.")


def _stamp_matches(user: AdminUser | None) -> bool:
    if user is None or user.username != session.get("user") or not user.session_stamp:
        return False
    sent = session.get("stamp")
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), user.session_stamp.encode())


def load_user() -> Response | None:
    """Put the logged-in admin in ``g.admin``; send anyone else to the login page.

    The account is looked up on every request (one primary-key read, not
    cached), so a removed account or a changed session stamp ends the
    session at its very next request.
    """
    g.admin = None
    if request.endpoint == "admin.static":
        return None  # the stylesheet and script are public: no need to ask the database
    user_id = session.get("uid")
    if user_id is not None:
        with runtime().db.reading() as db_session:
            user = accounts.account_by_id(db_session, user_id) if isinstance(user_id, int) else None
            if _stamp_matches(user):
                g.admin = user.username  # type: ignore[union-attr]
        if g.admin is None:
            # An ended session: drop it, and its CSRF token with it.
            session.clear()
    if g.admin is None and request.endpoint not in PUBLIC_ENDPOINTS:
        target = request.full_path if request.method == "GET" else None
        return redirect(url_for("admin.login", next=safe_next(target)))
    return None


def log_in(user: AdminUser) -> None:
    """A fresh session (no fixation), with a new CSRF token and the account's stamp."""
    session.clear()
    session.permanent = True
    session["uid"] = user.id
    session["user"] = user.username
    session["stamp"] = user.session_stamp
    session["csrf"] = secrets.token_urlsafe(32)


def current_user_id() -> int | None:
    """The logged-in admin's id (checked by :func:`load_user`), or None."""
    return session.get("uid") if g.get("admin") else None


def log_out(user: AdminUser | None) -> None:
    """End every session of ``user`` (the caller commits), and this one's cookie."""
    if user is not None:
        user.end_sessions()
    session.clear()


def client_address() -> str:
    """The visitor's address: nginx's word for it only when nginx is a trusted proxy."""
    caller = servers.Caller(
        remote_addr=request.remote_addr or "", headers=request.headers, server_token=None
    )
    return servers.client_ip(caller, runtime().settings.trusted_proxies)


NEXT_MAX = 2000
# Printable ASCII but space and backslash (browsers read "\" as "/").
_NEXT_CHARS = re.compile(r"[!-\[\]-~]+")


def safe_next(target: str | None) -> str | None:
    """Only a path inside the interface: never an open redirect elsewhere.

    Anything else (another site, a path outside ``/admin``, dot segments,
    control characters such as CR/LF that cannot go in a header) gives None,
    and the caller goes to the dashboard instead.
    """
    if not target or not isinstance(target, str) or len(target) > NEXT_MAX:
        return None
    if not _NEXT_CHARS.fullmatch(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.fragment:
        return None
    if parts.path != "/admin" and not parts.path.startswith("/admin/"):
        return None
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return None
    if target.endswith("?"):
        target = target[:-1]
    return target


def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "admin.static":
        # Pages show jobs and results: keep them out of shared caches and history.
        response.headers["Cache-Control"] = "no-store"
    return response
