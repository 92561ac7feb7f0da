"""Lists of live and done jobs, one job's page; requeue / cancel, bulk requeue of done
jobs by filter, and retrying a job's delivery now."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, g, redirect, render_template, request, url_for

from graderqueue.admin import deliveries, verdicts
from graderqueue.admin.job_lists import DoneMatch, done_jobs, live_jobs, result_summaries
from graderqueue.admin.job_page import job_detail, job_document
from graderqueue.admin.keyset import Cursor
from graderqueue.admin.live_queue import LISTED_STATUSES
from graderqueue.admin.names import platform_names, server_names
from graderqueue.admin.queued_list import (
    ClaimKey,
    claim_order_page,
    in_error_since,
    type_ids_by_name,
    type_names_of,
)
from graderqueue.delivery import post, redelivery
from graderqueue.errors import QueueError
from graderqueue.observability import metrics
from graderqueue.queue import control
from graderqueue.store.models import JobStatus
from graderqueue.web.admin.acting import CONFIRM_FIELD, actor, confirmed
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.admin.forms import FilterForm, done_filter, job_filter
from graderqueue.web.admin.security import safe_next
from graderqueue.web.admin.templating import page_args
from graderqueue.web.answers import runtime


@bp.get("/jobs/queued")
def jobs_queued() -> Response | str:
    """Live jobs newest first; queued ones alone in the order they will be handed out."""
    form = FilterForm(request.args)
    job_id = form.integer("id")
    if job_id is not None:
        return redirect(url_for("admin.job", job_id=job_id))
    statuses = tuple(LISTED_STATUSES)
    filters = job_filter(form, statuses)
    claim_order = filters.status == JobStatus.QUEUED
    with runtime().db.reading() as session:
        all_types = type_ids_by_name(session)
        type_name = form.choice("type", tuple(all_types))
        if claim_order:
            chosen = [all_types[type_name]] if type_name else list(all_types.values())
            after = ClaimKey.decode(request.args.get("after"))
            page: Any = claim_order_page(session, filters, chosen, after)
        else:
            page = live_jobs(session, filters, Cursor.decode(request.args.get("before")))
        ids = [j.id for j in page.rows]
        types_of = type_names_of(session, ids)
        error_since = in_error_since(session, [j.id for j in page.rows if j.status == "error"])
        platforms = platform_names(session)
        servers = server_names(session)
    return render_template(
        "admin/jobs_queued.html",
        kind="queued",
        page=page,
        claim_order=claim_order,
        type_name=type_name,
        type_names=list(all_types),
        types_of=types_of,
        error_since=error_since,
        filters=filters,
        problems=form.problems,
        platforms=platforms,
        servers=servers,
        statuses=statuses,
        args=request.args,
    )


@bp.get("/jobs/done")
def jobs_done() -> Response | str:
    form = FilterForm(request.args)
    job_id = form.integer("id")
    if job_id is not None:
        return redirect(url_for("admin.job", job_id=job_id))
    filters = done_filter(form)
    cursor = Cursor.decode(request.args.get("before"))
    with runtime().db.reading() as session:
        page = done_jobs(session, filters, cursor)
        ids = [j.id for j in page.rows]
        results = result_summaries(session, ids)
        delivered = deliveries.badges(session, ids)
        platforms = platform_names(session)
        servers = server_names(session)
    return render_template(
        "admin/jobs_done.html",
        kind="done",
        page=page,
        results=results,
        delivered=delivered,
        filters=filters,
        problems=form.problems,
        platforms=platforms,
        servers=servers,
        statuses=(),
        verdict_labels=verdicts.LABELS,
        args=request.args,
    )


# Jobs one bulk requeue from the done list may change; more: narrow the filter.
BULK_LIMIT = 10_000


@bp.post("/jobs/done/requeue")
def jobs_done_requeue() -> Response | str:
    """Requeue (rejudge) every done job the list's filters match, after a confirmation."""
    form = FilterForm(request.args)
    filters = done_filter(form)
    back = url_for("admin.jobs_done", **page_args(request.args))
    if form.problems:
        flash(" ".join(form.problems), "error")
        return redirect(back)
    rt = runtime()
    match = DoneMatch(filters)
    try:
        if not confirmed():
            counted = control.act_by_filter(
                rt.db, match, "requeue", **_BULK, dry_run=True, actor=actor()
            )
            return _ask_bulk(counted.matched, back)
        outcome = control.act_by_filter(
            rt.db, match, "requeue", **_BULK, dry_run=False, actor=actor()
        )
    except QueueError as exc:
        flash(exc.message, "error")
        return redirect(back)
    if outcome.type_ids:
        rt.jobs_available(sorted(outcome.type_ids))
    flash(f"{outcome.changed} done jobs are back in the queue, to be graded again.", "ok")
    return redirect(back)


def _no_budget(_session: object) -> None:
    """The JSON API charges a rate budget here; the admin pages have none."""


_BULK = {"priority": None, "limit": BULK_LIMIT, "spend": _no_budget}


def _ask_bulk(matched: int, back: str) -> str:
    facts = [
        f"{matched} done jobs match these filters.",
        "Each goes back to the queue and is graded again: its result, delivery and "
        "artifacts are deleted now, and the new result is delivered to its platform.",
    ]
    if matched > BULK_LIMIT:
        facts.append(f"That is over {BULK_LIMIT} jobs: narrow the filters first.")
    return render_template(
        "admin/confirm.html",
        title=f"Requeue {matched} done jobs?",
        facts=facts,
        button=f"Requeue {matched} jobs",
        back=back,
        choices=[],
        # The filters ride in the query string, as on the list itself.
        action=request.full_path,
        confirm_field=CONFIRM_FIELD,
    )


@bp.post("/jobs/<id:job_id>/delivery/retry")
def retry_delivery(job_id: int) -> Response:
    """Try the job's owed result again now instead of at its backoff."""
    rt = runtime()
    with rt.db.transaction() as session:
        count = redelivery.retry_now(session, job_id=job_id, actor=actor())
    if count:
        rt.results_stored(job_id)
        flash(f"Job #{job_id}: its result is being sent again now.", "ok")
    else:
        flash(f"Job #{job_id} owes no result to retry (delivered, or none owed).", "warning")
    return redirect(safe_next(request.form.get("next")) or url_for("admin.job", job_id=job_id))


@bp.get("/jobs/<id:job_id>")
def job(job_id: int) -> str:
    with runtime().db.reading() as session:
        detail = job_detail(session, job_id)
    if detail is None:
        abort(404, description=f"No job #{job_id}: it may have been cancelled or cleaned up.")
    # Errors stored before excerpts were bounded may still be long or hold
    # control characters: the page shows them through the same excerpt.
    return render_template("admin/job.html", d=detail, excerpt=_error_excerpt)


def _error_excerpt(error: str) -> str:
    return post.excerpt(error, post.ERROR_MAX)


@bp.get("/jobs/<id:job_id>/<any(job, result):what>.json")
def job_json(job_id: int, what: str) -> Response:
    """The raw JSON, for documents too big to show pretty-printed."""
    with runtime().db.reading() as session:
        text = job_document(session, job_id, what)
    if text is None:
        abort(404)
    return Response(
        text,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}-{what}.json"'},
    )


@bp.post("/jobs/<id:job_id>/requeue")
def requeue(job_id: int) -> Response:
    rt = runtime()
    try:
        with rt.db.transaction() as session:
            acted = control.act(session, job_id, "requeue", actor=f"admin {g.admin}")
    except QueueError as exc:
        flash(exc.message, "error")
    else:
        rt.jobs_available(sorted(acted.type_ids))
        flash(f"Job #{job_id} is back in the queue, its failures forgotten.", "ok")
    return redirect(url_for("admin.job", job_id=job_id))


@bp.post("/jobs/<id:job_id>/cancel")
def cancel(job_id: int) -> Response:
    db = runtime().db
    try:
        with db.transaction() as session:
            acted = control.act(session, job_id, "cancel", actor=f"admin {g.admin}")
    except QueueError as exc:
        flash(exc.message, "error")
        return redirect(url_for("admin.job", job_id=job_id))
    metrics.jobs_cancelled(db, "cancel", acted.job_ids)
    flash(f"Job #{job_id} cancelled: no server will get it, no result will be delivered.", "ok")
    return redirect(url_for("admin.job", job_id=job_id))
