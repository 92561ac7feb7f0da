"""Login, logout, and the checks every admin request goes through."""

from __future__ import annotations

from flask import Response, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from ... import passwords
from ...errors import QueueError, Unavailable
from ...models import AdminUser, utcnow
from ..answers import runtime
from . import security
from .blueprint import bp

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
def login() -> Response | str:
    if g.get("admin") and request.method == "GET":
        return redirect(url_for("admin.dashboard"))
    target = security.safe_next(request.values.get("next"))
    if request.method == "POST":
        username = request.form.get("username", "").strip()[:255]
        password = request.form.get("password", "")
        with runtime().db.transaction() as session:
            user = session.scalars(select(AdminUser).where(AdminUser.username == username)).first()
            # verify() runs the KDF even for unknown users: no timing hint.
            if passwords.verify(user.password_hash if user else None, password) and user:
                user.last_login = utcnow()
                security.log_in(user)
                return redirect(target or url_for("admin.dashboard"))
        flash("Wrong user name or password.", "error")
        return render_template("admin/login.html", username=username, next=target), 401
    return render_template("admin/login.html", username="", next=target)


@bp.post("/logout")
def logout() -> Response:
    security.log_out()
    flash("Logged out.", "info")
    return redirect(url_for("admin.login"))
