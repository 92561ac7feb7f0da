"""Server types and tags: tags of a type, pause and resume (a type or the queue), removal."""

from __future__ import annotations

from flask import Response, render_template, request, url_for

from graderqueue.admin import server_states
from graderqueue.admin.registry_pages import tag_rows, type_rows
from graderqueue.admin.type_overview import type_overview
from graderqueue.registry import operations, type_lifecycle
from graderqueue.store.models import ServerType, Tag, utcnow
from graderqueue.web.admin.acting import (
    Choice,
    actor,
    ask,
    checked,
    confirmed,
    name_or_404,
    perform,
)
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.answers import runtime


@bp.get("/types")
def types() -> str:
    rt = runtime()
    with rt.db.reading() as session:
        now = utcnow()
        stopped = operations.stopped(session)
        rows = type_rows(session)
        tags = tag_rows(session)
        overview = type_overview(session, server_states.servers(session, rt.settings, now))
    return render_template(
        "admin/types.html", types=rows, tags=tags, stopped=stopped, overview=overview, now=now
    )


@bp.post("/types/<id:type_id>")
def type_update(type_id: int) -> Response:
    name = name_or_404(ServerType, type_id, "server type")
    tags = request.form.getlist("tags")
    return perform(
        lambda s: type_lifecycle.update_type(s, name, tags=tags, actor=actor()),
        lambda now: (
            f"Server type {name} now handles tags: {', '.join(now) or 'none'}. "
            "Jobs already queued keep the types they were routed to."
        ),
        url_for("admin.types"),
    )


@bp.post("/types/<id:type_id>/<any(pause, resume):what>")
def type_pause(type_id: int, what: str) -> Response:
    name = name_or_404(ServerType, type_id, "server type")
    on = what == "pause"
    return perform(
        lambda s: operations.pause(s, name, on=on, actor=actor()),
        lambda _types: (
            f"Server type {name}: dispatch {what}d"
            + (" (its jobs are still accepted)." if on else ".")
        ),
        url_for("admin.types"),
        wake=lambda woken: woken,
    )


@bp.post("/dispatch/<any(pause, resume):what>")
def queue_pause(what: str) -> Response:
    on = what == "pause"
    return perform(
        lambda s: operations.pause(s, None, on=on, actor=actor()),
        lambda _types: (
            "Dispatch paused for every type: jobs are still accepted, none is handed out."
            if on
            else "Dispatch resumed (types paused one by one stay paused)."
        ),
        request.form.get("back") or url_for("admin.types"),
        wake=lambda woken: woken,
    )


@bp.post("/types/<id:type_id>/remove")
def type_remove(type_id: int) -> Response | str:
    name = name_or_404(ServerType, type_id, "server type")
    back = url_for("admin.types")
    if not confirmed():
        with runtime().db.reading() as session:
            stranding = type_lifecycle.type_stranding(session, name)
            others = [t.name for t in type_rows(session) if t.id != type_id]
        users = len(stranding.servers) + len(stranding.tokens)
        facts = [
            f"Server type {name} is deleted and taken from every job routed to it.",
            f"{len(stranding.servers)} server(s) and {len(stranding.tokens)} server token(s) "
            f"have it{': removing it is refused until they go' if users else ''}.",
            f"{len(stranding.jobs)} unfinished job(s) can run only on it"
            + (": cancel them or move them to another type." if stranding.jobs else "."),
        ]
        choices = []
        if stranding.jobs:
            choices = [
                Choice("cancel_jobs", "Cancel those jobs"),
                Choice(
                    "move_jobs_to",
                    "or route every job of this type to",
                    [("", "(no move)"), *((t, t) for t in others)],
                ),
            ]
        return ask(
            f"Remove server type {name}?",
            facts,
            button=f"Remove server type {name}",
            back=back,
            choices=choices,
        )
    cancel, move_to = checked("cancel_jobs"), request.form.get("move_jobs_to") or None
    return perform(
        lambda s: type_lifecycle.remove_type(
            s, name, cancel_jobs=cancel, move_jobs_to=move_to, actor=actor()
        ),
        lambda _woken: (
            f"Server type {name} removed" + (f"; its jobs now go to {move_to}." if move_to else ".")
        ),
        back,
        wake=lambda woken: woken,
    )


@bp.post("/tags/<id:tag_id>/remove")
def tag_remove(tag_id: int) -> Response | str:
    name = name_or_404(Tag, tag_id, "tag")
    back = url_for("admin.types")
    rt = runtime()
    if not confirmed():
        with rt.db.reading() as session:
            stranding = type_lifecycle.tag_stranding(session, name)
        facts = [f"Tag {name} is deleted and taken from every server type."]
        if stranding.forcing:
            facts.append(
                f"Refused while platform(s) {', '.join(stranding.forcing)} force it: "
                "change that on their pages first."
            )
        if name in rt.settings.default_tags:
            facts.append("Refused while the default_tags setting names it.")
        what_now = ": cancel them, or keep them on their types" if stranding.jobs else ""
        facts.append(f"{len(stranding.jobs)} live job(s) carry it{what_now}.")
        choices = []
        if stranding.jobs:
            choices = [
                Choice("jobs", "Its jobs", [("keep", "keep them"), ("cancel", "cancel them")])
            ]
        return ask(
            f"Remove tag {name}?", facts, button=f"Remove tag {name}", back=back, choices=choices
        )
    jobs = request.form.get("jobs")
    return perform(
        lambda s: type_lifecycle.remove_tag(
            s,
            name,
            default_tags=rt.settings.default_tags,
            cancel_jobs=jobs == "cancel",
            keep_jobs=jobs == "keep",
            actor=actor(),
        ),
        lambda n: f"Tag {name} removed" + (f"; {n} live job(s) cancelled." if n else "."),
        back,
    )
