"""One server (edit, drain and undrain, remove) and server tokens (revoke, rotate)."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for

from graderqueue.admin import server_states
from graderqueue.admin.registry_pages import server_form
from graderqueue.errors import BadRequest, QueueError
from graderqueue.protocol.numbers import parse_int
from graderqueue.registry import fleet, operations
from graderqueue.store.models import Server, ServerToken
from graderqueue.web.admin.acting import actor, ask, checked, confirmed, name_or_404, perform
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.answers import runtime


@bp.get("/servers/<id:server_id>")
def server(server_id: int) -> str:
    with runtime().db.reading() as session:
        form = server_form(session, server_id)
        view = server_states.server_view(session, runtime().settings, server_id)
    if form is None:
        abort(404, description=f"No server #{server_id}.")
    return render_template(
        "admin/server.html",
        s=form,
        view=view,
        lost_after=server_states.lost_after_sec(runtime().settings),
    )


def _changes(has_certificate: bool) -> fleet.ServerChanges:
    form = request.form
    max_jobs = None
    if "max_jobs" in form:
        max_jobs = parse_int((form.get("max_jobs") or "").strip(), max_digits=7)
        if max_jobs is None:
            raise BadRequest("Max jobs must be a number (0: no limit).")
    secret = form.get("wakeup_secret") or None
    return fleet.ServerChanges(
        wakeup_url=form.get("wakeup_url"),
        max_jobs=max_jobs,
        type_name=form.get("type") or None,
        wakeup_secret="" if checked("no_wakeup_secret") else secret,
        ssl_serial=form.get("ssl_serial") if has_certificate else None,
        ssl_dn=form.get("ssl_dn") if has_certificate else None,
    )


@bp.post("/servers/<id:server_id>")
def server_update(server_id: int) -> Response:
    name = name_or_404(Server, server_id, "server")
    back = url_for("admin.server", server_id=server_id)
    try:
        changes = _changes(has_certificate="ssl_serial" in request.form)
    except QueueError as exc:
        flash(exc.message, "error")
        return redirect(back)
    return perform(
        lambda s: fleet.update_server(s, name, changes, actor=actor())[1],
        lambda said: (
            f"Server {name} updated: {'; '.join(said)}." if said else f"Server {name} unchanged."
        ),
        back,
    )


@bp.post("/servers/<id:server_id>/<any(drain, undrain):what>")
def server_drain(server_id: int, what: str) -> Response:
    name = name_or_404(Server, server_id, "server")
    on = what == "drain"
    return perform(
        lambda s: operations.drain(s, name, on=on, actor=actor()),
        lambda _types: (
            f"Server {name} drained: it gets no new job; the jobs it holds finish."
            if on
            else f"Server {name} undrained: it gets jobs again."
        ),
        request.form.get("back") or url_for("admin.server", server_id=server_id),
        wake=lambda woken: woken,
    )


@bp.post("/servers/<id:server_id>/remove")
def server_remove(server_id: int) -> Response | str:
    name = name_or_404(Server, server_id, "server")
    back = url_for("admin.server", server_id=server_id)
    if not confirmed():
        with runtime().db.reading() as session:
            form = server_form(session, server_id)
        facts = [
            f"Server {name} is deleted. The {form.held if form else 0} job(s) it is grading "
            "go back to the queue at once, without a failure counted; its results for them "
            "would be refused.",
            "To let its jobs finish first, drain it and wait until it holds none.",
        ]
        if form is not None and form.token:
            facts.append(
                f"It registered itself with server token {form.token}: it registers again at "
                "its next request unless the token is revoked."
            )
        return ask(f"Remove server {name}?", facts, button=f"Remove server {name}", back=back)
    return perform(
        lambda s: fleet.remove_server(s, name, actor=actor()),
        lambda r: f"Server {name} removed; {len(r.job_ids)} job(s) it held queued again.",
        back,
        wake=lambda r: r.type_ids,
        after=url_for("admin.servers"),
    )


@bp.post("/tokens/<id:token_id>/revoke")
def token_revoke(token_id: int) -> Response | str:
    name = name_or_404(ServerToken, token_id, "server token")
    back = url_for("admin.servers") + "#tokens"
    if not confirmed():
        with runtime().db.reading() as session:
            servers = fleet.registered_servers(session, name)
            held = fleet.held_jobs(session, [s.id for s in servers])
        listed = ", ".join(s.name for s in servers) or "none"
        facts = [
            f"Server token {name} stops working at once.",
            f"The {len(servers)} server(s) it registered ({listed}) can no longer "
            f"authenticate and are removed; the {len(held)} job(s) they are grading go back "
            "to the queue.",
        ]
        return ask(f"Revoke server token {name}?", facts, button=f"Revoke {name}", back=back)
    return perform(
        lambda s: fleet.revoke_token(s, name, actor=actor()),
        lambda r: (
            f"Server token {name} revoked; servers removed: "
            f"{', '.join(r.servers) or 'none'}; {len(r.job_ids)} job(s) queued again."
        ),
        back,
        wake=lambda r: r.type_ids,
    )


@bp.post("/tokens/<id:token_id>/rotate")
def token_rotate(token_id: int) -> Response | str:
    name = name_or_404(ServerToken, token_id, "server token")
    back = url_for("admin.servers") + "#tokens"
    if not confirmed():
        facts = [
            f"Server token {name} gets a new value, shown once on the next page; the old one "
            "stops working at once.",
            "Its servers keep their registration and the jobs they hold; each one works again "
            "once its configuration has the new token.",
        ]
        return ask(f"Rotate server token {name}?", facts, button=f"Rotate {name}", back=back)
    try:
        with runtime().db.transaction() as session:
            new = fleet.rotate_token(session, name, actor=actor())
    except QueueError as exc:
        flash(exc.message, "error")
        return redirect(back)
    # Shown in this answer only (never a redirect: the session cookie would carry it).
    return render_template("admin/new_token.html", name=name, token=new.token, back=back)
