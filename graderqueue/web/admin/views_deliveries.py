"""The deliveries page: results owed per platform, a platform's backlog, retry now."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for

from graderqueue.admin import deliveries
from graderqueue.admin.names import platform_name
from graderqueue.delivery import redelivery
from graderqueue.web.admin.acting import actor
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.admin.forms import FilterForm
from graderqueue.web.answers import runtime


@bp.get("/deliveries")
def deliveries_page() -> str:
    """Per platform: pending, oldest pending, last error, last success;
    ``?platform=NAME``: that platform's undelivered results, oldest first."""
    form = FilterForm(request.args)
    wanted = form.text("platform")
    with runtime().db.reading() as session:
        platforms = deliveries.by_platform(session)
        chosen = next((p for p in platforms if p.name == wanted), None)
        owed = deliveries.backlog(session, chosen.id) if chosen is not None else []
    if wanted and chosen is None:
        form.problems.append(f"platform: no platform {wanted!r} owes or takes results.")
    return render_template(
        "admin/deliveries.html",
        platforms=platforms,
        chosen=chosen,
        owed=owed,
        limit=deliveries.BACKLOG_LIMIT,
        problems=form.problems,
    )


@bp.post("/deliveries/<id:platform_id>/retry")
def retry_platform(platform_id: int) -> Response:
    """Every result the platform is owed: tried again now instead of at its backoff."""
    rt = runtime()
    with rt.db.transaction() as session:
        name = platform_name(session, platform_id)
        if name is None:
            abort(404, description=f"No platform #{platform_id}.")
        count = redelivery.retry_now(session, platform_id=platform_id, actor=actor())
    if count:
        rt.results_stored(0)
        flash(f"{count} results owed to {name} are being sent again now.", "ok")
    else:
        flash(f"{name} is owed no result to retry.", "warning")
    return redirect(url_for("admin.deliveries_page", platform=name))
