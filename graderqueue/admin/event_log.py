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


@dataclass(frozen=True)
class EventFilter:
    kind: str = ""
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
    if filters.job_id is not None:
        driver.append(Event.job_id == filters.job_id)
    elif filters.server_id is not None:
        driver.append(Event.server_id == filters.server_id)
    elif filters.kind:
        driver.append(Event.kind == filters.kind)
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
        post=post,
        cursor=cursor,
        limit=limit,
        scan_limit=scan_limit,
    )
