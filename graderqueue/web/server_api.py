"""``/poll.php``, ``/sendresults.php``, ``/test.php``: requests from grading servers."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Blueprint, Response, request
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest, InvalidResult, NoJob, NotAssigned
from graderqueue.identity import servers
from graderqueue.protocol import results
from graderqueue.protocol.numbers import parse_int
from graderqueue.queue import jobs
from graderqueue.runtime import Runtime
from graderqueue.store.models import utcnow
from graderqueue.web.answers import answer, form_fields, runtime
from graderqueue.web.connection import client_gone

bp = Blueprint("server_api", __name__)


def _caller(form: dict[str, str]) -> servers.Caller:
    return servers.Caller(
        remote_addr=request.remote_addr or "",
        headers=request.headers,
        server_token=form.get("server_token"),
    )


@bp.route("/test.php", methods=["GET", "POST"])
@bp.route("/test", methods=["GET", "POST"])
def test() -> Response:
    rt = runtime()
    form = form_fields()
    with rt.db.transaction() as session:
        server = servers.authenticate_server(session, _caller(form), rt.settings.trusted_proxies)
        return answer(0, f"Connected as server {server.name} (id {server.id}).")


@bp.route("/poll.php", methods=["GET", "POST"])
@bp.route("/poll", methods=["GET", "POST"])
def poll() -> Response:
    if request.method == "HEAD":
        # The answer's body is never sent: a job claimed here would be held by
        # a server that never heard of it, until its lease ran out.
        raise NoJob()
    rt = runtime()
    settings = rt.settings
    form = form_fields()
    skip_locked = rt.db.dialect != "sqlite"

    def claim(session: Session) -> jobs.Claimed | None:
        return jobs.claim(
            session,
            server_id,
            type_id,
            max_fails=settings.max_fails,
            skip_locked=skip_locked,
            max_jobs=max_jobs,
        )

    rt.hub.ensure_listening()
    # Authentication, bookkeeping and the first claim share one short
    # transaction: on SQLite every write transaction queues for one lock.
    with rt.db.transaction() as session:
        server = servers.authenticate_server(session, _caller(form), settings.trusted_proxies)
        server_id, type_id = server.id, server.type_id
        max_jobs = server.max_concurrent_jobs
        seen = rt.hub.generation(type_id)
        # The server's row first, then its jobs: every claim locks in that order.
        jobs.record_poll(session, server_id, utcnow())
        released: list[int] = []
        if form.get("nbtasks", "").strip() == "0":
            released = jobs.release_held(session, server_id)
        released_types = sorted({t for j in released for t in jobs.type_ids_of(session, j)})
        job = claim(session)
    if released_types:
        rt.jobs_available(released_types, wake_servers=False)
    if job is None:
        with rt.poll_slots.hold(server_id) as may_wait:
            if not may_wait:
                raise NoJob()
            job = _wait_for_job(rt, type_id, seen, claim)
    return answer(
        0,
        "Success",
        jobid=job.id,
        jobname=job.name,
        taskrevision=job.taskrevision,
        jobdata=_json(job.jobdata),
    )


def _wait_for_job(
    rt: Runtime, type_id: int, seen: int, claim: Callable[[Session], jobs.Claimed | None]
) -> jobs.Claimed:
    """Claim again whenever a job of the type may have arrived, until the poll's time is up."""
    settings = rt.settings
    job = None
    deadline = time.monotonic() + settings.poll_wait_sec
    while job is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoJob()
        rt.hub.wait(type_id, seen, min(remaining, settings.poll_recheck_sec))
        seen = rt.hub.generation(type_id)
        if client_gone(request.environ):
            raise NoJob()  # nobody will read it; leave the job for a live poller
        with rt.db.transaction() as session:
            job = claim(session)
    return job


def _json(text: str):  # type: ignore[no-untyped-def]
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


@bp.route("/sendresults.php", methods=["GET", "POST"])
@bp.route("/sendresults", methods=["GET", "POST"])
def sendresults() -> Response:
    rt = runtime()
    form = form_fields()
    with rt.db.transaction() as session:
        server = servers.authenticate_server(session, _caller(form), rt.settings.trusted_proxies)
        raw_id = form.get("jobid")
        if raw_id is None or raw_id == "":
            raise BadRequest("No job ID sent.")
        result = jobs.parse_result(form.get("resultdata"))
        results.check_result_size(result, rt.settings.max_result_bytes)
        job_id = parse_int(raw_id)
        if job_id is None:
            raise NotAssigned()
        done = jobs.complete(session, server.id, job_id, result)
    if done.repeated:
        return answer(0, "Saved resultdata.")
    if not done.accepted:
        rt.jobs_available(done.type_ids)
        raise InvalidResult()
    rt.results_stored(done.job_id)
    return answer(0, "Saved resultdata.")
