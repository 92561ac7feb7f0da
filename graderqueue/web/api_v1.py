"""``/api/v1``: the JSON API for platforms and operators (docs/API.md).

Unlike the PHP-compatible protocol it uses real HTTP statuses; every refusal
is ``application/problem+json`` (RFC 9457) with ``type``, ``title``,
``status`` and ``detail``, its status taken from the error's class
(``errors.QueueError.http_status``). Every request carries
``Authorization: Bearer`` (identity/api_callers.py).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, request

from graderqueue.identity import api_callers
from graderqueue.queue import waiting
from graderqueue.web import openapi
from graderqueue.web.answers import runtime

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")


# Readable without credentials: it describes the API, it holds nothing.
PUBLIC = {"api_v1.openapi_json"}


@bp.before_request
def _authenticate() -> None:
    if request.endpoint in PUBLIC:
        return
    rt = runtime()
    g.api_caller = api_callers.authenticate(
        rt.db, rt.registry, rt.settings, request.headers.get("Authorization")
    )


def _caller() -> api_callers.ApiCaller:
    return g.api_caller


def _ok(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


@bp.get("/queue")
def queue() -> Response:
    """Waiting jobs per server type, tag and platform; a platform sees its own jobs."""
    caller = _caller()
    db = runtime().db
    # A platform token's jti is spent in the request's own transaction.
    with db.transaction() if caller.replay else db.reading() as session:
        caller.spend(session)
        return _ok(waiting.summary(session, caller.platform_id))


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """This API's OpenAPI 3.1 document."""
    return _ok(openapi.document())
