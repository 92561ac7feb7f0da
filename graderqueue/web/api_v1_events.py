"""``GET /api/v1/jobs/{id}/events``: a job's state and position as Server-Sent Events.

Broadway's stream shape: ``event: status_update`` with ``data: {"type":
"state", "data": "STARTED"}`` or ``{"type": "position", "data": 3}``. The
event id is what the client has been told (``STATE:position``), so a client
that reconnects with ``Last-Event-ID`` gets only what changed since, on any
node. How streams are served and bounded: dispatch/job_watch.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, Protocol

from flask import Response, request

from graderqueue.dispatch.job_watch import Seen
from graderqueue.errors import Unavailable, UnknownJob
from graderqueue.queue import job_view
from graderqueue.queue import position as positions
from graderqueue.web.answers import runtime
from graderqueue.web.api_v1 import bp, caller, session_for


@bp.get("/jobs/<id:job_id>/events")
def events(job_id: int) -> Response:
    who = caller()
    rt = runtime()
    with session_for(who) as session:
        state = job_view.state(session, job_id, who.platform_id)
        if state is None:
            raise UnknownJob(f"No job #{job_id}.")
        place = positions.position_only(session, job_id) if state == "QUEUED" else None
    watch = rt.job_watch
    if not watch.open(job_id):
        raise Unavailable("Too many event streams on this worker: try again shortly.")
    told = Seen.parse(request.headers.get("Last-Event-ID"))
    return serve(watch, job_id, Seen(state, place), told, _changes, job_view.TERMINAL)


class Watch(Protocol):
    """What a stream needs of its watcher (dispatch/job_watch.py, run_watch.py)."""

    current_round: int

    def wait(self, key: int, seen_round: int, timeout: float) -> tuple[int, Any]: ...

    def close(self, key: int) -> None: ...


def serve(
    watch: Watch,
    key: int,
    now: Seen,
    told: Seen | None,
    changes: Callable[[Seen | None, Seen], Iterator[str]],
    ended: Collection[str],
) -> Response:
    """The event stream of one watched job or run, its slot (opened by the
    caller) given back when the stream closes."""
    settings = runtime().settings
    stream = _stream(
        watch, key, now, told, changes, ended,
        max_sec=settings.events_max_sec, keepalive_sec=settings.events_keepalive_sec,
    )  # fmt: skip
    return Response(
        _Closing(stream, lambda: watch.close(key)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _stream(
    watch: Watch,
    key: int,
    now: Seen,
    told: Seen | None,
    changes: Callable[[Seen | None, Seen], Iterator[str]],
    ended: Collection[str],
    *,
    max_sec: float,
    keepalive_sec: float,
) -> Iterator[str]:
    """Events until an end state, or ``max_sec`` (then the client resumes)."""
    deadline = time.monotonic() + max_sec
    seen_round = watch.current_round
    yield "retry: 2000\n\n"
    last_write = time.monotonic()
    while True:
        for event in changes(told, now):
            last_write = time.monotonic()
            yield event
        told = now
        if now.state in ended or time.monotonic() >= deadline:
            return
        seen_round, latest = watch.wait(key, seen_round, keepalive_sec)
        if latest is not None and latest != now:
            now = latest
        elif time.monotonic() - last_write >= keepalive_sec:
            # A write now and then keeps proxies from closing a quiet stream
            # and tells the worker when the client has gone.
            last_write = time.monotonic()
            yield ": keepalive\n\n"


class _Closing:
    """The stream, and its slot given back exactly once when the server closes it
    (finished, or the client went away), even if it never started."""

    def __init__(self, events: Iterator[str], release: Callable[[], None]) -> None:
        self._events = events
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[str]:
        return self._events

    def close(self) -> None:
        self._events.close()  # type: ignore[attr-defined]
        if self._release is not None:
            self._release, release = None, self._release
            release()


def _changes(told: Seen | None, now: Seen) -> Iterator[str]:
    if told is None or told.state != now.state:
        yield event_text(Seen(now.state).event_id(), {"type": "state", "data": now.state})
    if now.position is not None and (told is None or told != now):
        yield event_text(now.event_id(), {"type": "position", "data": now.position})


def event_text(event_id: str, data: dict[str, object]) -> str:
    return f"id: {event_id}\nevent: status_update\ndata: {json.dumps(data)}\n\n"
