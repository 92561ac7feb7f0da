"""The dashboard's "needs attention" strip: what is wrong now, each with where to look.

Every item is read from figures other pages already show (servers' states,
the types overview, live jobs, pending deliveries, the event log), through
indexes on live rows or recent events: the strip costs the same at any size
of the done jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.admin.server_states import LOST, ServerView
from graderqueue.admin.type_overview import TypeOverview
from graderqueue.config import Settings
from graderqueue.store.models import Delivery, DeliveryState, Event, Platform

# The kind part B's grader-error verdict logs, one event per grader error.
GRADER_ERROR = "grader_error"
GRADER_ERROR_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Item:
    """One line of the strip: ``text`` links to ``href`` (a filtered list)."""

    key: str  # stable id for the page and tests: lost-servers, no-live-server-java...
    text: str
    href: str
    severity: str = "warning"  # or "error"


def attention_items(
    session: Session,
    settings: Settings,
    servers: list[ServerView],
    types: list[TypeOverview],
    live: dict[str, int],
    now: datetime,
    links: dict[str, str],
) -> list[Item]:
    """What needs an admin now, most urgent first; empty when all is well.

    ``links`` holds the paths the view builds with url_for: ``lost``,
    ``types``, ``queued``, ``error``, ``deliveries`` and ``done``.
    """
    return [
        *_server_items(servers, links),
        *_type_items(types, settings, now, links),
        *_job_items(session, live, now, links),
    ]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _server_items(servers: list[ServerView], links: dict[str, str]) -> list[Item]:
    lost = [s.name for s in servers if s.state == LOST]
    if not lost:
        return []
    text = f"{_plural(len(lost), 'lost server')}: {', '.join(lost)}"
    return [Item("lost-servers", text, links["lost"], "error")]


def _type_items(
    types: list[TypeOverview], settings: Settings, now: datetime, links: dict[str, str]
) -> list[Item]:
    items = []
    for t in types:
        if t.no_live_server:
            why = "no server at all" if t.no_server else "no live server"
            waiting = f", {_plural(t.queued, 'job')} waiting" if t.queued else ""
            text = f"Type {t.name}: {why}{waiting}"
            link = f"{links['types']}#type-{t.id}"
            level = "error" if t.queued else "warning"
            items.append(Item(f"no-live-server-{t.name}", text, link, level))
    threshold = timedelta(seconds=settings.attention_wait_sec)
    for t in types:
        if t.oldest_queued is not None and now - t.oldest_queued > threshold:
            minutes = (now - t.oldest_queued).total_seconds() / 60
            text = f"Type {t.name}: oldest queued job has waited {minutes:.0f} min"
            link = f"{links['queued']}?status=queued&type={quote(t.name)}"
            items.append(Item(f"oldest-wait-{t.name}", text, link))
    return items


def _job_items(
    session: Session, live: dict[str, int], now: datetime, links: dict[str, str]
) -> list[Item]:
    items = []
    if live.get("error"):
        text = f"{_plural(live['error'], 'job')} in error"
        items.append(Item("jobs-in-error", text, links["error"], "error"))
    for name, n in pending_deliveries(session):
        text = f"{_plural(n, 'result')} not yet delivered to {name}"
        link = f"{links['deliveries']}?platform={quote(name)}"
        items.append(Item(f"deliveries-{name}", text, link))
    errors = grader_errors_since(session, now - GRADER_ERROR_WINDOW)
    if errors:
        text = f"{_plural(errors, 'grader error')} in the last hour"
        link = f"{links['done']}?result=grader_error"
        items.append(Item("grader-errors", text, link, "error"))
    return items


def pending_deliveries(session: Session) -> list[tuple[str, int]]:
    """(platform name, results still owed to it), by name; the (state, ...) index."""
    rows = session.execute(
        select(Platform.name, func.count())
        .select_from(Delivery)
        .join(Platform, Platform.id == Delivery.platform_id)
        .where(Delivery.state == DeliveryState.PENDING)
        .group_by(Platform.name)
        .order_by(Platform.name)
    ).all()
    return [(name, n) for name, n in rows]


def grader_errors_since(session: Session, since: datetime) -> int:
    """Grader errors logged since ``since`` (the (kind, time) index)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.kind == GRADER_ERROR, Event.time >= since)
        )
        or 0
    )
