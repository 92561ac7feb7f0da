"""Keyset pagination with a bounded walk: every list page costs the same at any depth.

A page is "the next ``limit`` rows older than the cursor (time, id)", read
along an index ordered the same way, never ``OFFSET`` over the table and
never a count of it. Filters the index cannot serve (a name, a
platform...) are checked on the rows as the index is walked, on at most
``scan_limit`` entries per page: the walk's end is found first, by skipping
that many entries of the index alone (cheap: no row is read). If the page
is not full by then, it says how far it searched and offers to go on from
there. So a rare filter costs a few clicks, never a scan of a million rows
in one request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from graderqueue.protocol.numbers import parse_int

DEFAULT_LIMIT = 50
SCAN_LIMIT = 50_000


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
        # The id by the rule for outside integers: a huge one is no cursor,
        # not an overflow in the database.
        row_id = parse_int(ident)
        if row_id is None:
            return None
        try:
            return cls(datetime.fromisoformat(stamp), row_id)
        except ValueError:
            return None


@dataclass
class Page:
    rows: list[Any] = field(default_factory=list)
    next: Cursor | None = None  # where the next (older) page starts
    # Set when the scan limit stopped the search: rows older than this were not looked at.
    searched_to: Cursor | None = None


def _older_than(key: Any, ident: Any, cursor: Cursor | None) -> list[ColumnElement[bool]]:
    if cursor is None:
        return []
    # The first term bounds the index range; the second breaks ties on time.
    return [and_(key <= cursor.time, or_(key < cursor.time, ident < cursor.id))]


def _at_or_newer(key: Any, ident: Any, floor: Cursor | None) -> list[ColumnElement[bool]]:
    if floor is None:
        return []
    return [and_(key >= floor.time, or_(key > floor.time, ident >= floor.id))]


def _walk_end(
    session: Session, key: Any, ident: Any, where: list[Any], scan_limit: int
) -> Cursor | None:
    """The last entry a walk of this page may visit, found on the index alone.

    No row is read: skipping ``scan_limit`` index entries is cheap. None when
    the walk ends before that.
    """
    stop = session.execute(
        select(ident.label("id"), key.label("k"))
        .where(*where)
        .order_by(key.desc(), ident.desc())
        .offset(scan_limit - 1)
        .limit(1)
    ).first()
    return Cursor(stop.k, stop.id) if stop is not None else None


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
    of that index (e.g. one per status), merged newest first. ``post`` must
    not be index-served (see :func:`~graderqueue.admin.conditions.noindex`):
    they are checked on the rows the walks visit.
    """
    ident = model.id
    order = (key.desc(), ident.desc())
    rows: list[Any] = []
    frontier: Cursor | None = None
    for extra in branches:
        where = [*driver, *extra, *_older_than(key, ident, cursor)]
        floor = _walk_end(session, key, ident, where, scan_limit) if post else None
        if floor is not None:
            frontier = floor if frontier is None else max(frontier, floor)
        rows.extend(
            session.scalars(
                select(model)
                .where(*where, *_at_or_newer(key, ident, floor), *post)
                .order_by(*order)
                .limit(limit + 1)
                .options(*options)
            )
        )

    return _merged(rows, key.key, frontier, limit)


def _merged(rows: list[Any], key_name: str, frontier: Cursor | None, limit: int) -> Page:
    """The page out of every walk's rows: newest first, none past the frontier."""

    def position(row: Any) -> Cursor:
        return Cursor(getattr(row, key_name), row.id)

    rows = sorted(rows, key=position, reverse=True)
    if frontier is not None:
        # Past the newest walk end, some walk was not read: those rows wait
        # for the next page, or a later page would skip or repeat some.
        rows = [row for row in rows if position(row) >= frontier]
    page = Page(rows=rows[:limit])
    if len(rows) > limit:
        page.next = position(rows[limit - 1])
    elif frontier is not None:
        page.next = page.searched_to = frontier
    return page
