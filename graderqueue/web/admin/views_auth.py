"""Login, logout, and the checks every admin request goes through."""

from __future__ import annotations

import math

from flask import Response, flash, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from graderqueue.admin import accounts
from graderqueue.errors import QueueError, Unavailable
from graderqueue.identity import login_throttle, passwords
from graderqueue.store.models import utcnow
from graderqueue.web.admin import security
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.answers import runtime

# CSRF first: a forged POST is refused before anything else looks at it.
bp.before_request(security.check_csrf)
bp.before_request(security.load_user)
bp.after_request(security.security_headers)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
    return render_template("admin/error.html", error=exc), exc.code or 500


@bp.errorhandler(Unavailable)
def _unavailable(exc: Unavailable):  # type: ignore[no-untyped-def]
    # Without this, the protocol's JSON answer would be rendered for a page.
    return render_template("admin/error.html", error=exc, title="Database busy"), 503


@bp.errorhandler(QueueError)
def _refused(exc: QueueError):  # type: ignore[no-untyped-def]
    return render_template("admin/error.html", error=exc, title="Refused"), 400


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int, dict[str, str]]:
    if g.get("admin") and request.method == "GET":
        return redirect(url_for("admin.dashboard"))
    target = security.safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("admin/login.html", username="", next=target)
    rt = runtime()
    username = request.form.get("username", "").strip()[:255]
    password = request.form.get("password", "")
    address = security.client_address()
    with rt.db.reading() as session:
        user = accounts.account_named(session, username)
    # Counted under the account's own name: MariaDB's collation finds `admin`
    # for `ádmin` or `ADMIN`, and each spelling must not get a budget of its own.
    account = user.username if user else username
    # Counted before the password is checked: over the limit costs no hash.
    with rt.db.transaction() as session:
        wait = login_throttle.admit(
            session, login_throttle.Limits.from_settings(rt.settings), account, address, utcnow()
        )
    if wait is not None:
        return _throttled(wait, username, target)
    # The hash is checked outside any transaction: it must not hold SQLite's write lock.
    # verify() runs the KDF even for unknown users: no timing hint.
    if passwords.verify(user.password_hash if user else None, password) and user:
        with rt.db.transaction() as session:
            current = accounts.record_login(session, user)
            if current is not None:
                login_throttle.succeeded(session, account, address)
                security.log_in(current)
                return redirect(target or url_for("admin.dashboard"))
    flash("Wrong user name or password.", "error")
    return render_template("admin/login.html", username=username, next=target), 401


def _throttled(wait: int, username: str, target: str | None) -> tuple[str, int, dict[str, str]]:
    """The log-in form again, refused (429) for ``wait`` seconds."""
    minutes = max(1, math.ceil(wait / 60))
    flash(
        "Too many failed log-ins for this account or from this address: "
        f"try again in {minutes} minute{'s' if minutes > 1 else ''}.",
        "error",
    )
    page = render_template("admin/login.html", username=username, next=target)
    return page, 429, {"Retry-After": str(wait)}


@bp.post("/logout")
def logout() -> Response:
    """Ends every session of this account (all browsers, every node), not only this one."""
    user_id = security.current_user_id()
    with runtime().db.transaction() as session:
        security.log_out(accounts.account_by_id(session, user_id) if user_id is not None else None)
    flash("Logged out.", "info")
    return redirect(url_for("admin.login"))
