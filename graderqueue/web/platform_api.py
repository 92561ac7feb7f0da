"""``/api.php``: requests from platforms (and the interface's own forms)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request
from sqlalchemy.exc import IntegrityError

from graderqueue.dispatch import wakeups
from graderqueue.errors import BadRequest
from graderqueue.identity import platforms
from graderqueue.protocol import submissions
from graderqueue.protocol.numbers import parse_int
from graderqueue.queue import jobs, routing
from graderqueue.web.answers import answer, form_fields, runtime

bp = Blueprint("platform_api", __name__)


def _upload() -> submissions.Upload | None:
    file = request.files.get("solfile")
    if file is None or not file.filename:
        return None
    try:
        content = file.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("solfile is not UTF-8 text.") from exc
    return submissions.Upload(filename=file.filename, content=content)


@bp.route("/api.php", methods=["GET", "POST"])
@bp.route("/api", methods=["GET", "POST"])
def api() -> Response:
    rt = runtime()
    form = form_fields()
    # Crypto and password checks happen here, outside any transaction.
    fields, sender = platforms.identify(rt.directory, rt.keys, rt.settings, form)
    kind = fields.get("request")
    if kind in ("sendjob", "sendsolution"):
        sub = submissions.parse(
            fields, rt.settings, restrict_paths=sender.restrict_paths, upload=_upload()
        )
        return _send(sub, sender)
    if kind == "getjob":
        return _getjob(fields, sender)
    if kind == "test":
        _record(sender)
        if sender.platform_id is not None:
            return answer(0, f"Connected as platform id {sender.platform_id}")
        return answer(0, f"Connected as user {sender.name}")
    if kind == "wakeup" and sender.is_interface:
        server_id = _digits(fields.get("serverid"), "Invalid serverid.")
        if wakeups.wake_server(rt.db, rt.settings, server_id):
            return answer(0, "Server wake-up successful.")
        return answer(1, "Server wake-up failed.")
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
    new = None
    for attempt in range(2):
        try:
            with rt.db.transaction() as session:
                sender.record(session)
                tags, type_ids = routing.resolve(
                    rt.directory,
                    sub.tag_names,
                    forced_tag_id=sender.force_tag_id,
                    default_tags=rt.settings.default_tags,
                )
                new = jobs.NewJob(
                    name=sub.name,
                    jobdata=json.dumps(sub.job),
                    priority=sub.priority,
                    tags=tags,
                    type_ids=type_ids,
                    jobusertaskid=sub.jobusertaskid,
                    taskrevision=sub.taskrevision,
                    timeout_sec=sub.timeout_sec,
                )
                job_id, _created = jobs.enqueue(
                    session, new, platform_id=sender.platform_id, received_via=sender.via
                )
            break
        except IntegrityError:
            # Two identical requests raced to create the same job: the second
            # attempt finds the first's row and updates it, as dedup says.
            if attempt:
                raise
    assert new is not None
    rt.jobs_available(new.type_ids)
    return answer(0, f"Queued as job ID #{job_id}.", jobid=job_id)


def _getjob(fields: dict, sender: platforms.Sender) -> Response:
    job_id = _digits(fields.get("jobid"), "Invalid jobid.")
    db = runtime().db
    # A fresh token's jti is recorded only if the request succeeds.
    with db.transaction() if sender.replay else db.reading() as session:
        sender.record(session)
        job = jobs.get_for_platform(session, job_id, sender.platform_id, sender.via)
        origin, row = jobs.job_row(session, job)
    return answer(0, "Success", origin=origin, data=row)
