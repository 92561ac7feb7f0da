"""``/api.php``: requests from platforms (and the interface's own forms)."""

from __future__ import annotations

from flask import Blueprint, Response

from graderqueue.errors import BadRequest
from graderqueue.identity import platforms
from graderqueue.observability import metrics
from graderqueue.protocol import submissions
from graderqueue.protocol.numbers import parse_int
from graderqueue.queue import enqueue, lookup
from graderqueue.web.answers import form_fields, runtime, success, uploaded_solution

bp = Blueprint("platform_api", __name__)


@bp.route("/api.php", methods=["GET", "POST"])
@bp.route("/api", methods=["GET", "POST"])
def api() -> Response:
    rt = runtime()
    form = form_fields()
    # Crypto and password checks happen here, outside any transaction.
    fields, sender = platforms.identify(rt.registry, rt.keys, rt.settings, form)
    kind = fields.get("request")
    if kind in ("sendjob", "sendsolution"):
        sub = submissions.parse(
            fields,
            rt.settings,
            restrict_paths=sender.restrict_paths,
            upload=uploaded_solution("solfile is not UTF-8 text."),
            lenient_integers=sender.lenient_integers,
        )
        return _send(sub, sender)
    if kind == "getjob":
        return _getjob(fields, sender)
    if kind == "test":
        _record(sender)
        if sender.platform_id is not None:
            return success(f"Connected as platform id {sender.platform_id}")
        return success(f"Connected as user {sender.name}")
    if kind in (None, ""):
        raise BadRequest("No request made.")
    raise BadRequest(f"Unknown request `{str(kind)[:50]}`.")


def _record(sender: platforms.Sender) -> None:
    if sender.replay is not None:
        with runtime().db.transaction() as session:
            sender.record(session)


def _digits(value: object, message: str) -> int:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    number = parse_int(text) if text == text.strip() else None
    if number is None:
        raise BadRequest(message)
    return number


def _send(sub: submissions.Submission, sender: platforms.Sender) -> Response:
    rt = runtime()
    queued = enqueue.submit(
        rt.db,
        rt.registry,
        rt.settings,
        [sub],
        platform_id=sender.platform_id,
        received_via=sender.via,
        forced_tag_id=sender.force_tag_id,
        before=sender.record,  # a fresh token's jti is spent with the job it queued
    )
    rt.jobs_available(queued.type_ids)
    metrics.jobs_received(sender.platform_id, sender.name, len(queued.job_ids))
    (job_id,) = queued.job_ids
    return success(f"Queued as job ID #{job_id}.", jobid=job_id)


def _getjob(fields: dict, sender: platforms.Sender) -> Response:
    job_id = _digits(fields.get("jobid"), "Invalid jobid.")
    db = runtime().db
    # A fresh token's jti is recorded only if the request succeeds.
    with db.transaction() if sender.replay else db.reading() as session:
        sender.record(session)
        job = lookup.get_for_platform(session, job_id, sender.platform_id, sender.via)
        origin, row = lookup.job_row(session, job)
    return success(origin=origin, data=row)
