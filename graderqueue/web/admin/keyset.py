"""Keyset pagination with a bounded walk: every list page costs the same at any depth.

A page is "the next ``limit`` rows older than the cursor (time, id)", read
along an index ordered the same way, never ``OFFSET`` and never a count of
the table. Filters the index cannot serve (a name, a platform...) are
checked on at most ``scan_limit`` index entries per page; if that many were
read without filling the page, the page says how far it searched and offers
to go on from there. So a rare filter costs a few clicks, never a scan of
a million rows in one request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, union_all
from sqlalchemy.orm import Session

DEFAULT_LIMIT = 50
SCAN_LIMIT = 20_000


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in a (time DESC, id DESC) ordering: the last row seen."""

    time: datetime
    id: int

    def encode(self) -> str:
        return f"{self.time.isoformat()}_{self.id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        if not text or "_" not in text:
            return None
        stamp, _, ident = text.rpartition("_")
        try:
            return cls(datetime.fromisoformat(stamp), int(ident))
        except ValueError:
            return None


@dataclass
class Page:
    rows: list[Any] = field(default_factory=list)
    next: Cursor | None = None  # where the next (older) page starts
    # Set when the scan limit stopped the search: rows older than this were not looked at.
    searched_to: Cursor | None = None


def noindex(column: Any) -> Any:
    """The column in a form no index matches.

    Post-filters are written this way so that a planner without statistics
    does not drive the query from, say, the platform index (a third of the
    table) and sort it, instead of walking the ordered index we chose.
    """
    python_type = getattr(column.type, "python_type", str)
    return column + 0 if python_type is int else column + ""


def _older_than(key: Any, ident: Any, cursor: Cursor | None) -> list[ColumnElement[bool]]:
    if cursor is None:
        return []
    # The first term bounds the index range; the second breaks ties on time.
    return [and_(key <= cursor.time, or_(key < cursor.time, ident < cursor.id))]


def keyset_page(
    session: Session,
    model: Any,
    key: Any,
    *,
    driver: Sequence[ColumnElement[bool]] = (),
    branches: Sequence[Sequence[ColumnElement[bool]]] = ((),),
    post: Sequence[ColumnElement[bool]] = (),
    cursor: Cursor | None = None,
    limit: int = DEFAULT_LIMIT,
    scan_limit: int = SCAN_LIMIT,
    options: Sequence[Any] = (),
) -> Page:
    """Rows of ``model`` older than ``cursor`` by (key DESC, id DESC).

    ``driver`` conditions must be served by an index ordered by ``key`` (and
    the row id); each of ``branches`` adds equality conditions for one walk
    of that index (e.g. one per status), merged newest first. ``post`` are
    checked on the rows the walks visit.
    """
    ident = model.id
    where = [*driver, *_older_than(key, ident, cursor)]
    walk_limit = scan_limit if post else limit + 1

    def walk(extra: Sequence[ColumnElement[bool]]):  # type: ignore[no-untyped-def]
        return (
            select(ident.label("id"), key.label("k"))
            .where(*where, *extra)
            .order_by(key.desc(), ident.desc())
        )

    walks = [walk(extra).limit(walk_limit).subquery() for extra in branches]
    if len(walks) == 1:
        merged = walks[0]
    else:
        merged = union_all(*(select(w.c.id, w.c.k) for w in walks)).subquery()
    query = (
        select(model)
        .join(merged, merged.c.id == ident)
        .where(*post)
        .order_by(merged.c.k.desc(), merged.c.id.desc())
        .limit(limit + 1)
        .options(*options)
    )
    rows = list(session.scalars(query))

    frontier: Cursor | None = None
    if post:
        # A walk that read scan_limit entries stopped at its last one; past the
        # newest such stop, some walks were not read, so rows there wait for
        # the next page (else a later page would skip or repeat them).
        for extra in branches:
            stop = session.execute(walk(extra).offset(scan_limit - 1).limit(1)).first()
            if stop is not None:
                found = Cursor(stop.k, stop.id)
                frontier = found if frontier is None else max(frontier, found)
    if frontier is not None:
        rows = [r for r in rows if Cursor(getattr(r, key.key), r.id) > frontier]

    page = Page(rows=rows[:limit])
    if len(rows) > limit:
        last = rows[limit - 1]
        page.next = Cursor(getattr(last, key.key), last.id)
    elif frontier is not None:
        page.next = page.searched_to = frontier
    return page
