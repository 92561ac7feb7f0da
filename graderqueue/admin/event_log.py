"""The event log, a page at a time, newest first.

Each page walks the index of the most selective filter given: ``(job_id)``,
``(server_id, time)``, ``(kind, time)``, else ``(time)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from graderqueue.admin.conditions import contains, noindex, time_range
from graderqueue.admin.keyset import DEFAULT_LIMIT, SCAN_LIMIT, Cursor, Page, keyset_page
from graderqueue.store import events
from graderqueue.store.models import Event

# How much each kind matters to an admin; kinds not named are "info".
ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)
SEVERITY = {
    events.TIMEOUT: ERROR,
    events.BAD_RESULT: ERROR,
    events.JOB_ERROR: ERROR,
    events.DELIVERY_GIVEN_UP: ERROR,
    "grader_error": ERROR,  # logged by the grader-error verdict
    events.WAKEUP_FAILED: WARNING,
    events.RELEASED: WARNING,
    events.DELIVERY_FAILED: WARNING,
    events.ALERT_SENT: WARNING,
    events.SERVER_REMOVED: WARNING,
    events.SERVER_TOKEN_REVOKED: WARNING,
    events.CANCELLED: WARNING,
}
# Kinds repeated back to back by one server with one message, shown as one row.
GROUPED = frozenset({events.WAKEUP_FAILED})


def severity(kind: str) -> str:
    return SEVERITY.get(kind, INFO)


def kinds_of(level: str) -> list[str]:
    """Every kind of this severity (info: every known kind not listed as more)."""
    if level == INFO:
        return [k for k in event_kinds() if severity(k) == INFO]
    return sorted(k for k, v in SEVERITY.items() if v == level)


@dataclass(frozen=True)
class EventRow:
    """One line of the log: an event, or a run of the same one (``count`` of them)."""

    event: Event
    count: int = 1
    first: datetime | None = None  # the oldest of the run, when count > 1

    @property
    def severity(self) -> str:
        return severity(self.event.kind)


def group_repeats(rows: list[Event]) -> list[EventRow]:
    """Runs of one GROUPED kind from one server with one message, newest first, as one row.

    Only neighbours on the page are merged: a run cut by another event, or
    by the page's end, shows as two rows.
    """
    grouped: list[EventRow] = []
    for event in rows:
        last = grouped[-1] if grouped else None
        if (
            last is not None
            and event.kind in GROUPED
            and last.event.kind == event.kind
            and last.event.server_id == event.server_id
            and last.event.message == event.message
        ):
            grouped[-1] = EventRow(last.event, last.count + 1, event.time)
        else:
            grouped.append(EventRow(event))
    return grouped


@dataclass(frozen=True)
class EventFilter:
    kind: str = ""
    severity: str = ""
    job_id: int | None = None
    server_id: int | None = None
    text: str = ""
    since: datetime | None = None
    until: datetime | None = None


def event_kinds() -> list[str]:
    """The kinds the queue writes (constants of ``events``), for the filter's list."""
    return sorted(
        value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and name != "MESSAGE_MAX"
    )


def events_page(
    session: Session,
    filters: EventFilter,
    cursor: Cursor | None = None,
    limit: int = DEFAULT_LIMIT,
    scan_limit: int = SCAN_LIMIT,
) -> Page:
    """Events newest first, walking the index of the most selective filter."""
    driver = time_range(Event.time, filters.since, filters.until)
    post: list[Any] = []
    branches: list[list[Any]] = [[]]
    if filters.job_id is not None:
        driver.append(Event.job_id == filters.job_id)
    elif filters.server_id is not None:
        driver.append(Event.server_id == filters.server_id)
    elif filters.kind:
        driver.append(Event.kind == filters.kind)
    elif filters.severity:
        # One walk of the (kind, time) index per kind of that severity, merged.
        branches = [[Event.kind == kind] for kind in kinds_of(filters.severity)]
    if filters.severity and (filters.job_id is not None or filters.server_id is not None):
        post.append(noindex(Event.kind).in_(kinds_of(filters.severity)))
    if filters.job_id is not None and filters.server_id is not None:
        post.append(noindex(Event.server_id) == filters.server_id)
    if filters.kind and (filters.job_id is not None or filters.server_id is not None):
        post.append(noindex(Event.kind) == filters.kind)
    if filters.text:
        post.append(contains(Event.message, filters.text))
    return keyset_page(
        session,
        Event,
        Event.time,
        driver=driver,
        branches=branches,
        post=post,
        cursor=cursor,
        limit=limit,
        scan_limit=scan_limit,
    )
