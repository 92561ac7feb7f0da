"""``/poll.php``, ``/sendresults.php``, ``/test.php``: requests from grading servers."""

from __future__ import annotations

from flask import Blueprint, Response, request

from graderqueue.dispatch import longpoll
from graderqueue.errors import BadRequest, InvalidResult, NoJob, NotAssigned
from graderqueue.identity import servers
from graderqueue.observability import metrics
from graderqueue.protocol import results
from graderqueue.protocol.numbers import parse_int
from graderqueue.queue import artifacts, complete, lookup
from graderqueue.web.answers import form_fields, runtime, success
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
        return success(f"Connected as server {server.name} (id {server.id}).")


@bp.route("/poll.php", methods=["GET", "POST"])
@bp.route("/poll", methods=["GET", "POST"])
def poll() -> Response:
    if request.method == "HEAD":
        # The answer's body is never sent: a job claimed here would be held by
        # a server that never heard of it, until its lease ran out.
        raise NoJob()
    form = form_fields()
    job = longpoll.poll(
        runtime(),
        _caller(form),
        holds_nothing=form.get("nbtasks", "").strip() == "0",
        client_gone=lambda: client_gone(request.environ),
    )
    metrics.handed_out(runtime().db, job.id)
    return success(
        jobid=job.id,
        jobname=job.name,
        taskrevision=job.taskrevision,
        jobdata=_json(job.jobdata),
    )


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
        result = results.parse_result(form.get("resultdata"))
        results.check_result_size(result, rt.settings.max_result_bytes)
        job_id = parse_int(raw_id)
        if job_id is None:
            raise NotAssigned()
        captured = artifacts.from_form(form, rt.settings.artifact_max_bytes)
        done = complete.complete(session, server.id, job_id, result, captured)
    if done.repeated:
        return success("Saved resultdata.")
    metrics.result_taken(rt.db, server.type_id, done.job_id, done.accepted)
    if not done.accepted:
        rt.jobs_available(done.type_ids)
        raise InvalidResult()
    rt.results_stored(done.job_id)
    if done.run_progress:
        rt.runs_progressed(done.run_progress)
    return success("Saved resultdata.")


@bp.route("/jobstate.php", methods=["GET", "POST"])
@bp.route("/jobstate", methods=["GET", "POST"])
def jobstate() -> Response:
    """Whether the calling server still holds a job (not in the PHP protocol).

    The project's graderserver asks every few seconds while it grades, and
    stops the program when the answer is no: the job was cancelled, requeued,
    or its lease ran out and another server has it.
    """
    rt = runtime()
    form = form_fields()
    with rt.db.transaction() as session:
        server = servers.authenticate_server(session, _caller(form), rt.settings.trusted_proxies)
        job_id = parse_int(form.get("jobid", ""))
        if job_id is None:
            raise BadRequest("No job ID sent.")
        holds = lookup.held_by(session, job_id, server.id)
    return success(jobid=job_id, holds=holds)
