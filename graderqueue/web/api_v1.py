"""``/api/v1``: the JSON API for platforms and operators (docs/API.md).

Unlike the PHP-compatible protocol it uses real HTTP statuses; every refusal
is ``application/problem+json`` (RFC 9457) with ``type``, ``title``,
``status`` and ``detail``, its status taken from the error's class
(``errors.QueueError.http_status``). Every request carries
``Authorization: Bearer`` (identity/api_callers.py). The job endpoints are
in :mod:`~graderqueue.web.api_v1_jobs`, the event streams in
:mod:`~graderqueue.web.api_v1_events`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, g, request
from flask.blueprints import BlueprintSetupState

from graderqueue.errors import BadRequest, Forbidden
from graderqueue.identity import api_callers
from graderqueue.queue import waiting
from graderqueue.registry import workers
from graderqueue.web import openapi
from graderqueue.web.admin.blueprint import IdConverter
from graderqueue.web.answers import runtime

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")


def _add_converters(state: BlueprintSetupState) -> None:
    state.app.url_map.converters.setdefault("id", IdConverter)


bp.record_once(_add_converters)

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


def caller() -> api_callers.ApiCaller:
    return g.api_caller


def writer() -> api_callers.ApiCaller:
    """The caller, if it may act: a platform, or an operator token of scope ``write``."""
    who = caller()
    if who.scope != "write":
        raise Forbidden("This API token is read-only (scope read): it cannot act.")
    return who


@contextlib.contextmanager
def session_for(who: api_callers.ApiCaller, *, write: bool = False) -> Iterator[Any]:
    """The request's session; a platform token's jti is spent in it (so it writes)."""
    db = runtime().db
    with db.transaction() if (write or who.replay) else db.reading() as session:
        who.spend(session)
        yield session


def ok(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)


def json_body(*, required: bool = True) -> Any:
    """The request's JSON body (any content type); an empty body is None if not required."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise BadRequest("The request needs a JSON body.")
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("The body is not valid JSON.") from exc


@bp.get("/queue")
def queue() -> Response:
    """Waiting jobs per server type, tag and platform; a platform sees its own jobs."""
    who = caller()
    with session_for(who) as session:
        return ok(waiting.summary(session, who.platform_id))


@bp.get("/servers")
def servers() -> Response:
    """The grading servers; a platform sees those of the types its jobs can use."""
    who = caller()
    rt = runtime()
    with session_for(who) as session:
        types = None
        if who.platform_id is not None:
            platform = rt.registry.platform(who.name)
            force = platform.force_tag_id if platform is not None else None
            types = workers.usable_type_names(session, rt.registry, force)
        return ok({"servers": workers.workers(session, rt.settings, types)})


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """This API's OpenAPI 3.1 document."""
    return ok(openapi.document(runtime().settings.api_page_max))


# The job endpoints register themselves on this blueprint.
from graderqueue.web import (  # noqa: E402, F401
    api_v1_events,
    api_v1_jobs,
    api_v1_labs,
    api_v1_runs,
)
