"""Admin accounts: the list, and removing one (accounts are made with the CLI)."""

from __future__ import annotations

from flask import Response, abort, flash, g, redirect, render_template, url_for

from graderqueue.admin import accounts
from graderqueue.web.admin.acting import actor, ask, confirmed, perform
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.answers import runtime


@bp.get("/accounts")
def accounts_page() -> str:
    with runtime().db.reading() as session:
        rows = accounts.account_rows(session)
    return render_template("admin/accounts.html", accounts=rows)


@bp.post("/accounts/<id:user_id>/remove")
def account_remove(user_id: int) -> Response | str:
    back = url_for("admin.accounts_page")
    with runtime().db.reading() as session:
        user = accounts.account_by_id(session, user_id)
        name = user.username if user is not None else None
    if name is None:
        abort(404, description=f"No admin account #{user_id}.")
    if name == g.admin:
        # Nobody locks themselves (or the last admin) out by a click.
        flash("You cannot remove the account you are logged in with.", "error")
        return redirect(back)
    if not confirmed():
        facts = [
            f"Admin account {name} is deleted; its open sessions end at their next click.",
            "It can be made again with `graderqueue admin add`, with a new password.",
        ]
        return ask(f"Remove admin {name}?", facts, button=f"Remove admin {name}", back=back)
    return perform(
        lambda s: accounts.remove_account(s, name, actor=actor()),
        lambda _none: f"Admin {name} removed.",
        back,
    )
