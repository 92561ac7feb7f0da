"""``/metrics`` (Prometheus, not public) and ``/readyz`` (docs/METRICS.md)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request
from flask.blueprints import BlueprintSetupState

from graderqueue.observability import access, health, metrics
from graderqueue.web.answers import runtime

bp = Blueprint("metrics_api", __name__)


def _check_at_start(state: BlueprintSetupState) -> None:
    """A wrong metrics_allow or a missing multiprocess directory stops the app at start."""
    access.check_settings(state.app.extensions["graderqueue"].settings)
    metrics.check_setup()


bp.record_once(_check_at_start)


@bp.get("/metrics")
def scrape() -> Response:
    rt = runtime()
    verdict = access.verdict(rt.settings, request.remote_addr or "", request.headers)
    if verdict is access.Verdict.NEEDS_TOKEN:
        return Response(
            "metrics: send the bearer token (metrics_token)\n",
            401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    if verdict is not access.Verdict.ALLOWED:
        return Response(
            "metrics: not from this address (metrics_allow)\n", 403, mimetype="text/plain"
        )
    body = metrics.exposition(rt.db, rt.settings)
    return Response(body, content_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


@bp.get("/readyz")
def readyz() -> Response:
    """200 when every check passes, else 503; the body names each check's outcome."""
    rt = runtime()
    checks = health.checks(rt.db, rt.keys)
    ready = all(checks.values())
    body = json.dumps({"ready": ready, "checks": checks})
    return Response(
        body + "\n",
        200 if ready else 503,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )
