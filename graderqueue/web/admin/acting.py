"""What the admin pages' actions share: who acts, running one, asking first.

An action runs one transaction over a function of :mod:`graderqueue.registry`
(or :mod:`graderqueue.admin`); a refusal becomes an error message on the
page it came from and changes nothing. Destructive actions ask first, on a
page of their own, without JavaScript: a form posted without
``confirmed=yes`` shows what the action will do and the choices it needs
(its jobs: cancel them, move them...), and that page posts it again with
``confirmed=yes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Response, abort, flash, g, redirect, render_template, request

from graderqueue.admin.registry_pages import name_of
from graderqueue.errors import QueueError
from graderqueue.web.answers import runtime

CONFIRM_FIELD = "confirmed"
T = TypeVar("T")


def name_or_404(model: type, row_id: int, what: str) -> str:
    """The name of the row an action's URL names; 404 if there is none."""
    with runtime().db.reading() as session:
        name = name_of(session, model, row_id)
    if name is None:
        abort(404, description=f"No {what} #{row_id}.")
    return name


def actor() -> str:
    """The event log's name for the admin acting (the CLI is "cli")."""
    return f"admin {g.admin}"


def perform(
    work: Callable[[Any], T],  # given the transaction's session
    done: Callable[[T], str],
    back: str,
    wake: Callable[[T], Iterable[int]] | None = None,
    after: str | None = None,
) -> Response:
    """Run ``work`` in one transaction; say how it went on the page ``back``
    (``after`` once it is done, when the page ``back`` is gone with the row).

    ``wake``: the server types whose waiting polls and idle servers to tell
    after the commit (jobs claimable again).
    """
    rt = runtime()
    try:
        with rt.db.transaction() as session:
            result = work(session)
    except QueueError as exc:
        flash(exc.message, "error")
        return redirect(back)
    if wake is not None:
        types = sorted(set(wake(result)))
        if types:
            rt.jobs_available(types)
    flash(done(result), "ok")
    return redirect(after or back)


def confirmed() -> bool:
    return request.form.get(CONFIRM_FIELD) == "yes"


@dataclass(frozen=True)
class Choice:
    """One option on a confirmation page: a checkbox, or a list to pick from."""

    name: str
    label: str
    values: list[tuple[str, str]] = field(default_factory=list)  # (value, label); empty: checkbox


def ask(
    title: str,
    facts: list[str],
    *,
    button: str,
    back: str,
    choices: list[Choice] | None = None,
) -> str:
    """The confirmation page: what will happen, the choices, and the button that does it."""
    return render_template(
        "admin/confirm.html",
        title=title,
        facts=facts,
        button=button,
        back=back,
        choices=choices or [],
        action=request.path,
        confirm_field=CONFIRM_FIELD,
    )


def checked(name: str) -> bool:
    return request.form.get(name) in ("on", "yes", "1", "true")
