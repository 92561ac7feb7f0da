"""Platforms: their fair-share standing, edit, disable and enable, remove."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for

from graderqueue.admin.registry_pages import platform_detail, platform_rows
from graderqueue.errors import BadRequest
from graderqueue.protocol.numbers import parse_int
from graderqueue.registry import lifecycle
from graderqueue.store.models import Platform
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


@bp.get("/platforms")
def platforms() -> str:
    with runtime().db.reading() as session:
        rows = platform_rows(session)
    return render_template("admin/platforms.html", platforms=rows)


@bp.get("/platforms/<id:platform_id>")
def platform(platform_id: int) -> str:
    with runtime().db.reading() as session:
        detail = platform_detail(session, platform_id)
    if detail is None:
        abort(404, description=f"No platform #{platform_id}.")
    return render_template("admin/platform.html", d=detail)


def _number(field: str, what: str) -> int | None:
    raw = (request.form.get(field) or "").strip()
    if not raw:
        return None
    number = parse_int(raw, max_digits=10)
    if number is None:
        raise BadRequest(f"The {what} must be a number.")
    return number


def _changes() -> lifecycle.PlatformChanges:
    """The edit form: every field as it should be (unchanged ones change nothing).

    A field missing from the post changes nothing; an empty one clears what
    can be cleared. The checkbox says it was on the form with a hidden field.
    """
    form = request.form
    max_queued = _number("max_queued", "cap on queued jobs")
    new_key = (form.get("add_key") or "").strip()
    return lifecycle.PlatformChanges(
        return_url=form.get("return_url"),
        restrict_paths=form.get("restrict_paths"),
        force_tag=form.get("force_tag"),
        require_fresh=checked("require_fresh") if "require_fresh_shown" in form else None,
        lenient_integers=(
            checked("lenient_integers") if "lenient_integers_shown" in form else None
        ),
        weight=_number("weight", "weight"),
        max_queued=max_queued,
        no_max_queued=max_queued is None and "max_queued" in form,
        add_keys=(new_key,) if new_key else (),
        remove_keys=tuple(form.getlist("remove_key")),
    )


@bp.post("/platforms/<id:platform_id>")
def platform_update(platform_id: int) -> Response:
    name = name_or_404(Platform, platform_id, "platform")
    back = url_for("admin.platform", platform_id=platform_id)
    try:
        changes = _changes()
    except BadRequest as exc:
        flash(exc.message, "error")
        return redirect(back)
    return perform(
        lambda s: lifecycle.update_platform(s, name, changes, actor=actor()),
        lambda said: (
            f"Platform {name} updated: {'; '.join(said)}."
            if said
            else f"Platform {name} unchanged."
        ),
        back,
    )


@bp.post("/platforms/<id:platform_id>/<any(disable, enable):what>")
def platform_switch(platform_id: int, what: str) -> Response:
    name = name_or_404(Platform, platform_id, "platform")
    disabled = what == "disable"
    note = " Its queued jobs are still graded." if disabled else ""
    return perform(
        lambda s: lifecycle.set_platform_disabled(s, name, disabled=disabled, actor=actor()),
        lambda changed: f"Platform {name} {what}d.{note}" if changed else f"Already {what}d.",
        url_for("admin.platform", platform_id=platform_id),
    )


@bp.post("/platforms/<id:platform_id>/remove")
def platform_remove(platform_id: int) -> Response | str:
    name = name_or_404(Platform, platform_id, "platform")
    if not confirmed():
        with runtime().db.reading() as session:
            live = lifecycle.platform_stranding(session, name)
        facts = [
            f"Platform {name}, its keys and every job it sent are deleted, with results "
            "still owed to it. The event log keeps their events.",
            f"It has {live} live job(s) (queued, held or being graded)."
            + (" Removing it is refused unless they are cancelled." if live else ""),
            "To stop it for a while instead, disable it.",
        ]
        choices = [Choice("cancel_jobs", "Cancel its live jobs")] if live else []
        return ask(
            f"Remove platform {name}?",
            facts,
            button=f"Remove platform {name}",
            back=url_for("admin.platform", platform_id=platform_id),
            choices=choices,
        )
    cancel = checked("cancel_jobs")
    return perform(
        lambda s: lifecycle.remove_platform(s, name, cancel_jobs=cancel, actor=actor()),
        lambda n: f"Platform {name} removed" + (f"; {n} live job(s) cancelled." if n else "."),
        url_for("admin.platform", platform_id=platform_id),
        after=url_for("admin.platforms"),
    )
