"""The admin blueprint object, shared by the view modules that add routes to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import BaseConverter, ValidationError

from graderqueue.protocol.numbers import parse_int

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
