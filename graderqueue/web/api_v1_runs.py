"""``/api/v1/runs``: submit a run, read its status, follow it, act on it (docs/API.md)."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, request

from graderqueue.dispatch.job_watch import Seen
from graderqueue.errors import NotFound, Unavailable
from graderqueue.queue import run_view, runs
from graderqueue.store.models import RunState
from graderqueue.web.answers import runtime
from graderqueue.web.api_v1 import bp, caller, json_body, ok, session_for, writer
from graderqueue.web.api_v1_events import event_text, serve

ENDED = frozenset(runs.ENDED)
STATES = frozenset(s.value for s in RunState)


@bp.post("/runs")
def submit_run() -> Response:
    """A run: its pre job, or its first roster jobs, are queued at once; 201 with ``id``."""
    who = writer()
    rt = runtime()
    body = json_body()
    platform = rt.registry.platform(who.name) if who.platform_id is not None else None
    started = runs.submit(
        rt.db,
        rt.registry,
        rt.settings,
        body,
        platform=platform,
        received_via="" if platform else f"api:{who.name}",
        spend=who.spend,
    )
    rt.runs_progressed(started.progress)
    location = {"Location": f"{bp.url_prefix}/runs/{started.run_id}"}
    return ok({"id": started.run_id, "state": started.state}, 201, location)


@bp.get("/runs/<id:run_id>")
def get_run(run_id: int) -> Response:
    who = caller()
    with session_for(who) as session:
        found = run_view.status(session, run_id, who.platform_id)
    if found is None:
        raise NotFound(f"No run #{run_id}.")
    return ok(found)


@bp.post("/runs/<id:run_id>/cancel")
@bp.post("/runs/<id:run_id>/hold")
@bp.post("/runs/<id:run_id>/release")
def act_on_run(run_id: int) -> Response:
    """The action on every job of the run that allows it; 409 if the run ended."""
    action = request.path.rsplit("/", 1)[1]
    who = writer()
    rt = runtime()
    acted = runs.act(
        rt.db, run_id, action, platform_id=who.platform_id, actor=who.label, spend=who.spend
    )
    if acted.type_ids:
        rt.jobs_available(sorted(acted.type_ids))
    if action == "cancel" and rt.delivery_kick is not None:
        rt.delivery_kick()  # the run's end, owed to its callback URL
    return ok({"id": run_id, "state": acted.status["state"], "counts": acted.status["counts"]})


@bp.get("/runs/<id:run_id>/events")
def run_events(run_id: int) -> Response:
    """The run's state, and how many roster jobs ended, as Server-Sent Events."""
    who = caller()
    rt = runtime()
    with session_for(who) as session:
        found = run_view.find(session, run_id, who.platform_id)
        if found is None:
            raise NotFound(f"No run #{run_id}.")
    watch = rt.run_watch
    if not watch.open(run_id):
        raise Unavailable("Too many event streams on this worker: try again shortly.")
    told = _told(request.headers.get("Last-Event-ID"))
    return serve(watch, run_id, Seen(found.state, found.roster_ended), told, _changes, ENDED)


def _told(text: str | None) -> Seen | None:
    state, sep, ended = (text or "").partition(":")
    if not sep or state not in STATES or not ended.isdigit() or len(ended) > 11:
        return None
    return Seen(state, int(ended))


def _changes(told: Seen | None, now: Seen) -> Iterator[str]:
    """``state`` on each stage change, ``progress`` (roster jobs ended) as they end."""
    if told is None or told.state != now.state:
        yield event_text(now.event_id(), {"type": "state", "data": now.state})
    if told is None or told.position != now.position:
        yield event_text(now.event_id(), {"type": "progress", "data": now.position})
