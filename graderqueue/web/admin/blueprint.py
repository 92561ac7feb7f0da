"""The admin blueprint object, shared by the view modules that add routes to it,
and its error pages (404, 405, 500 in the admin layout)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Blueprint
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import BaseConverter, ValidationError

from graderqueue.protocol.numbers import parse_int

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static" / "admin"

bp = Blueprint("admin", __name__, static_folder=str(STATIC), static_url_path="/static")


class IdConverter(BaseConverter):
    """``<id:name>``: a row id in a URL, read by the project's rule for outside integers.

    Werkzeug's ``int`` takes any number of (even non-ASCII) digits, and a
    number too big for the database failed the page with a 500; here it is
    simply no page (404).
    """

    regex = r"[0-9]+"
    weight = 50

    def to_python(self, value: str) -> int:
        number = parse_int(value)
        if number is None:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


def _add_converters(state: BlueprintSetupState) -> None:
    state.app.url_map.converters.setdefault("id", IdConverter)


# Recorded before any route, so it runs before their rules are compiled.
bp.record_once(_add_converters)


# Error pages. Errors inside the admin views have the blueprint's handlers
# (views_auth.py); a URL under /admin that names no page (404), or a method
# a page does not take (405), fails before any view, so the app's handler
# answers those: for /admin it is this page in the admin layout, anywhere
# else the app's own answer (the protocol's JSON, the API's problem JSON).
def _in_admin(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def _routing_error(exc: HTTPException) -> Any:
    from flask import current_app, render_template, request

    from graderqueue.web.admin import security

    if not _in_admin(request.path):
        return current_app.error_handler_spec[None][None][Exception](exc)
    # A visitor who is not logged in is sent to the login page first, as
    # for any admin page: whether a page exists is no one else's business.
    login = security.load_user()
    if login is not None:
        return login
    answer = current_app.make_response(
        (render_template("admin/error.html", error=exc), exc.code or 500)
    )
    for name, value in exc.get_headers():
        if name.lower() == "allow":
            answer.headers[name] = value
    return security.security_headers(answer)


def _add_error_pages(state: BlueprintSetupState) -> None:
    for code in (404, 405):
        state.app.register_error_handler(code, _routing_error)


bp.record_once(_add_error_pages)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Any:
    """A failure in an admin view: the admin layout's 500 page, never a trace."""
    from flask import render_template, request

    log.exception("unexpected error on %s", request.path)
    return render_template(
        "admin/error.html",
        error=InternalServerError("Something went wrong on the queue's side; the log says what."),
    ), 500
