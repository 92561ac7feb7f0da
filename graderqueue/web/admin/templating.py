"""Template filters and globals: how times, durations and numbers look on every page.

All times in the database are naive UTC and are shown as UTC, labelled so.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from flask import Flask

from graderqueue.admin.windows import WINDOWS
from graderqueue.store.models import utcnow
from graderqueue.web.admin.charts import line_chart
from graderqueue.web.admin.security import CSRF_FIELD, csrf_token

# Shown for a missing value (an en dash, as in print).
MISSING = "\N{EN DASH}"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else MISSING


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = ((now or utcnow()) - value).total_seconds()
    suffix = "ago" if seconds >= 0 else "from now"
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} {suffix}"
    return f"{seconds:.0f} s {suffix}"


def seconds(value: float | None) -> str:
    if value is None:
        return MISSING
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return MISSING
    return seconds(max(0.0, (end - start).total_seconds()))


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return MISSING
    return f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{value * 100:.1f} %"


def page_args(args: Mapping[str, str]) -> dict[str, str]:
    """The filters of a list page, to carry into its paging links (never url_for's own
    ``_external``/``_anchor``... options, nor the old cursor)."""
    return {k: v for k, v in args.items() if not k.startswith("_") and k != "before"}


def install(app: Flask) -> None:
    app.jinja_env.filters.update(
        when=when, ago=ago, seconds=seconds, number=number, percent=percent
    )
    app.jinja_env.globals.update(
        duration=duration,
        csrf_token=csrf_token,
        csrf_field=CSRF_FIELD,
        WINDOWS=WINDOWS,
        line_chart=line_chart,
        utcnow=utcnow,
        page_args=page_args,
    )
