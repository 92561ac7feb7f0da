"""``/poll.php``, ``/sendresults.php``, ``/test.php``: requests from grading servers."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request, stream_with_context

from graderqueue.dispatch import longpoll
from graderqueue.errors import BadRequest, InvalidResult, NoJob, NotAssigned, NotFound
from graderqueue.files import blobs, job_files
from graderqueue.identity import servers
from graderqueue.observability import metrics
from graderqueue.protocol import results
from graderqueue.protocol.numbers import parse_int
from graderqueue.queue import artifacts, complete, lookup
from graderqueue.web.answers import form_fields, runtime, success
from graderqueue.web.connection import client_gone

log = logging.getLogger(__name__)

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
    rt = runtime()
    metrics.handed_out(rt.registry, job)
    extra = {}
    if job.has_files:
        # [new] fields after the original four, only for a job with files:
        # the original grading server reads the four and ignores the rest.
        with rt.db.reading() as session:
            extra = job_files.for_server(session, job.id)
    return success(
        jobid=job.id,
        jobname=job.name,
        taskrevision=job.taskrevision,
        jobdata=_json(job.jobdata),
        **extra,
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
        # The job's max_kb is read only when there is an output to cut.
        cap = job_files.output_cap(session, job_id) if form.get("output") else None
        captured = artifacts.from_form(form, rt.settings.artifact_max_bytes, output_cap=cap)
        done = complete.complete(session, server.id, job_id, result, captured)
    if done.repeated:
        return success("Saved resultdata.")
    metrics.result_taken(rt.registry, server.type_id, done)
    if not done.accepted:
        rt.jobs_available(done.type_ids)
        raise InvalidResult()
    rt.results_stored(done.job_id, callbacks=done.callback_owed)
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


@bp.route("/jobfile.php", methods=["GET", "POST"])
@bp.route("/jobfile", methods=["GET", "POST"])
def jobfile() -> Response:
    """One file of a job the calling server holds, by its SHA-256 (not in the PHP protocol).

    The project's graderserver fetches a job's ``files`` (named in its poll
    answer) here before the program runs. The bytes stream from the
    database a chunk at a time; a refusal is the protocol's JSON answer.
    """
    rt = runtime()
    form = form_fields()
    with rt.db.transaction() as session:
        server = servers.authenticate_server(session, _caller(form), rt.settings.trusted_proxies)
        job_id = parse_int(form.get("jobid", ""))
        if job_id is None:
            raise BadRequest("No job ID sent.")
        sha256 = blobs.check_sha256(form.get("sha256", ""))
        blob_id = job_files.blob_for_server(session, server.id, job_id, sha256)
    if blob_id is None:
        raise NotFound(f"Job #{job_id} held by this server has no file {sha256}.")
    log.info("Serving job #%d's file %s to server %s", job_id, sha256[:12], server.name)
    return Response(
        stream_with_context(blobs.chunks(rt.db, blob_id)),
        mimetype="application/octet-stream",
        headers={"X-Content-SHA256": sha256},
    )
