"""Conditions the admin lists' filters are made of."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def noindex(column: Any) -> Any:
    """The column in a form no index matches.

    Filters are written this way so that a planner without statistics does
    not read a third of the table along the platform index and sort it,
    instead of walking the ordered index and stopping after fifty rows.
    """
    python_type = getattr(column.type, "python_type", str)
    return column + 0 if python_type is int else column + ""


def contains(column: Any, text: str) -> Any:
    """``column`` holds ``text`` as typed: ``%`` and ``_`` in it are no wildcards."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%{escaped}%", escape="\\")


def time_range(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    """``since <= column <= until``, either bound left out when None."""
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column <= until)
    return conditions
