"""Dashboard, servers (with wake-up), event log and task statistics."""

from __future__ import annotations

from functools import partial

from flask import Response, flash, redirect, render_template, request, url_for
from markupsafe import Markup

from graderqueue.admin import live_queue, server_states, task_statistics
from graderqueue.admin.activity import Activity, activity
from graderqueue.admin.attention import attention_items
from graderqueue.admin.event_log import SEVERITIES, event_kinds, events_page, group_repeats
from graderqueue.admin.keyset import Cursor
from graderqueue.admin.names import server_name, server_names
from graderqueue.admin.type_overview import type_overview
from graderqueue.admin.windows import window_by_key
from graderqueue.dispatch import wakeups
from graderqueue.registry import fleet, operations
from graderqueue.store.models import utcnow
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.admin.cache import state
from graderqueue.web.admin.charts import Series, line_chart
from graderqueue.web.admin.forms import FilterForm, event_filter
from graderqueue.web.answers import runtime


@bp.get("/", endpoint="dashboard")
def dashboard_page() -> str:
    rt = runtime()
    window = window_by_key(request.args.get("window"), "1h")
    with rt.db.reading() as session:
        now = utcnow()
        live = live_queue.live_counts(session)
        servers = server_states.servers(session, rt.settings, now)
        types = type_overview(session, servers)
        attention = attention_items(
            session, rt.settings, servers, types, live, now, _attention_links()
        )
        figures = activity(session, window, now, state().buckets)
        stopped = operations.stopped(session)
    return render_template(
        "admin/dashboard.html",
        window=window,
        live=live,
        types=types,
        attention=attention,
        now=now,
        summary=server_states.server_summary(servers),
        activity=figures,
        charts=_dashboard_charts(figures),
        stopped=stopped,
    )


def _attention_links() -> dict[str, str]:
    return {
        "lost": url_for("admin.servers", state=server_states.LOST),
        "types": url_for("admin.types"),
        "queued": url_for("admin.jobs_queued"),
        "error": url_for("admin.jobs_queued", status="error"),
        "deliveries": url_for("admin.deliveries_page"),
        "done": url_for("admin.jobs_done"),
    }


def _dashboard_charts(figures: Activity) -> list[Markup]:
    """The dashboard's charts, one value per bar of the window."""
    bars = figures.buckets
    starts = [bar.start for bar in bars]
    tick = figures.window.tick

    def chart(title: str, *series: Series, unit: str = "") -> Markup:
        return line_chart(title, starts, series, tick_seconds=tick, unit=unit)

    def each(name: str) -> list[float]:
        return [getattr(bar, name) for bar in bars]

    def average(name: str) -> list[float | None]:
        """Per-bar averages; None where no job finished (no data, not zero)."""
        return [getattr(bar, name) if bar.sampled else None for bar in bars]

    return [
        chart("Jobs done per minute", Series("done", each("per_minute"), "bar"), unit=" /min"),
        chart(
            "Wait before grading (s)",
            Series("average", average("wait_avg")),
            Series("longest", average("wait_max")),
            unit=" s",
        ),
        chart("Grading time (s)", Series("average", average("grading_avg")), unit=" s"),
        chart(
            "Jobs at once",
            Series("being graded", each("busy_servers")),
            Series("waiting", each("queue_length")),
        ),
        chart(
            "Time used per minute (s)",
            Series("CPU", each("cpu_per_minute")),
            Series("real", each("real_per_minute")),
            unit=" s",
        ),
        chart(
            "Failed attempts",
            Series("failed attempts", each("failures"), "bar", whole=True),
            Series("jobs given up", each("gave_up"), whole=True),
        ),
    ]


@bp.get("/servers")
def servers() -> str:
    rt = runtime()
    with rt.db.reading() as session:
        views = server_states.servers(session, rt.settings)
        tokens = fleet.token_rows(session)
        stopped = operations.stopped(session)
    # ?state=lost (the attention strip's link): only servers in that state.
    only = request.args.get("state", "")
    shown = [v for v in views if v.state == only] if only in server_states.STATES else views
    return render_template(
        "admin/servers.html",
        servers=shown,
        only=only if shown is not views else "",
        summary=server_states.server_summary(views),
        tokens=tokens,
        stopped=stopped,
    )


@bp.post("/servers/<id:server_id>/wakeup")
def wake(server_id: int) -> Response:
    rt = runtime()
    with rt.db.reading() as session:
        name = server_name(session, server_id)
    if name is None:
        flash(f"No server #{server_id}.", "error")
    elif wakeups.wake_server(rt.db, rt.settings, server_id):
        flash(f"Server {name} woke up: it answered ok.", "ok")
    else:
        flash(f"Server {name} did not answer the wake-up (see its wake-up failures).", "error")
    return redirect(url_for("admin.servers"))


@bp.get("/events")
def event_log() -> str:
    form = FilterForm(request.args)
    filters = event_filter(form)
    cursor = Cursor.decode(request.args.get("before"))
    with runtime().db.reading() as session:
        page = events_page(session, filters, cursor)
        names = server_names(session)
    return render_template(
        "admin/events.html",
        page=page,
        rows=group_repeats(page.rows),
        severities=SEVERITIES,
        filters=filters,
        problems=form.problems,
        kinds=event_kinds(),
        servers=names,
        args=request.args,
    )


@bp.get("/stats")
def statistics() -> str:
    window = window_by_key(request.args.get("window"), "1d")
    group = task_statistics.group_by_key(request.args.get("group"))
    compute = partial(task_statistics.timed_statistics, runtime().db, group, window)
    answer = state().task_stats.get(
        (group, window.key),
        compute,
        ttl=task_statistics.answer_ttl(window),
        refresh="refresh" in request.args,
    )
    return render_template(
        "admin/stats.html",
        window=window,
        group=group,
        groups=task_statistics.GROUPS,
        stats=answer.stats,
        took=answer.took,
        computed_at=answer.computed_at,
    )
