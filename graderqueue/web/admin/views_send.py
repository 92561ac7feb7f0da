"""The send-job form: a sendjob or sendsolution request typed in, queued server-side."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for

from graderqueue.admin import actions as admin_actions
from graderqueue.admin.names import tag_names
from graderqueue.errors import BadRequest, QueueError
from graderqueue.observability import metrics
from graderqueue.protocol.numbers import parse_int
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.admin.security import CSRF_FIELD
from graderqueue.web.answers import runtime, uploaded_solution

# Form fields that are not request fields.
FORM_ONLY = {CSRF_FIELD, "copies"}
DEFAULTS = {
    "taskpath": "$ROOT_PATH/",
    "memlimit": "131072",
    "timelimit": "10000",
    "lang": "c",
    "priority": "10",
}


def _copies() -> int:
    raw = (request.form.get("copies") or "1").strip()
    copies = parse_int(raw, max_digits=6)
    if copies is None:
        raise BadRequest("Copies must be a number.")
    return copies


def _form(values: dict[str, str], enabled: bool, status: int) -> tuple[str, int]:
    with runtime().db.reading() as session:
        tags = tag_names(session)
    return render_template("admin/send.html", enabled=enabled, values=values, tags=tags), status


@bp.route("/send", methods=["GET", "POST"])
def send() -> Response | tuple[str, int] | str:
    rt = runtime()
    enabled = rt.settings.send_job_form
    if request.method == "GET" or not enabled:
        status = 200 if enabled or request.method == "GET" else 403
        return _form(DEFAULTS, enabled, status)
    fields = {k: v for k, v in request.form.items() if k not in FORM_ONLY and v != ""}
    try:
        upload = (
            uploaded_solution("The solution file is not UTF-8 text.")
            if fields.get("request") == "sendsolution"
            else None
        )
        copies = _copies()
        sent = admin_actions.send_from_interface(
            rt.db, rt.registry, rt.settings, fields, upload=upload, copies=copies
        )
    except QueueError as exc:
        flash(exc.message, "error")
        values = {**DEFAULTS, **request.form.to_dict()}
        return _form(values, True, 400)
    rt.jobs_available(sent.type_ids)
    metrics.jobs_received(None, "interface", len(set(sent.job_ids)))
    ids = ", ".join(f"#{i}" for i in sent.job_ids)
    flash(f"Queued as job{'s' if len(sent.job_ids) > 1 else ''} {ids}.", "ok")
    return redirect(url_for("admin.job", job_id=sent.job_ids[0]))
