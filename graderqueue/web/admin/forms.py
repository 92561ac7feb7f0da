"""Reading filter forms (query strings) into plain filter values.

Bad values never fail a page: they are dropped and reported, so a typo in
a date shows the unfiltered list with a note instead of an error page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from graderqueue.admin.event_log import SEVERITIES, EventFilter
from graderqueue.admin.job_lists import NO_PLATFORM, JobFilter
from graderqueue.admin.verdicts import VERDICTS
from graderqueue.protocol.numbers import parse_int

TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")


class FilterForm:
    """One query string's filter values, with the problems found in it."""

    def __init__(self, args: Mapping[str, str]) -> None:
        self.args = args
        self.problems: list[str] = []

    def text(self, name: str, limit: int = 255) -> str:
        return (self.args.get(name) or "").strip()[:limit]

    def integer(self, name: str) -> int | None:
        raw = self.text(name)
        if not raw:
            return None
        number = parse_int(raw.removeprefix("#"))
        if number is not None:
            return number
        self.problems.append(f"{name}: {raw!r} is not a number, ignored.")
        return None

    def time(self, name: str, *, end_of_day: bool = False) -> datetime | None:
        """A UTC date or date and time; a bare date ``until`` means the whole day."""
        raw = self.text(name)
        if not raw:
            return None
        for fmt in TIME_FORMATS:
            try:
                return datetime.strptime(raw, fmt)
            except ValueError:
                continue
        try:
            day = datetime.strptime(raw, "%Y-%m-%d")
        except ValueError:
            self.problems.append(f"{name}: {raw!r} is not a date (YYYY-MM-DD HH:MM), ignored.")
            return None
        return day.replace(hour=23, minute=59, second=59, microsecond=999999) if end_of_day else day

    def choice(self, name: str, allowed: tuple[str, ...] | list[str]) -> str:
        raw = self.text(name)
        if raw and raw not in allowed:
            self.problems.append(f"{name}: {raw!r} is not one of {', '.join(allowed)}, ignored.")
            return ""
        return raw


def job_filter(form: FilterForm, statuses: tuple[str, ...]) -> JobFilter:
    platform = form.text("platform")
    platform_id: int | None
    platform_id = NO_PLATFORM if platform == "none" else form.integer("platform")
    return JobFilter(
        name=form.text("name"),
        status=form.choice("status", statuses),
        platform_id=platform_id,
        server_id=form.integer("server"),
        since=form.time("since"),
        until=form.time("until", end_of_day=True),
    )


def done_filter(form: FilterForm) -> JobFilter:
    """The done list's filters: the common ones, and the result's verdict, task and language."""
    return replace(
        job_filter(form, ()),
        verdict=form.choice("result", VERDICTS),
        task=form.text("task"),
        language=form.text("language", 64),
    )


def event_filter(form: FilterForm) -> EventFilter:
    return EventFilter(
        kind=form.text("kind", 64),
        severity=form.choice("severity", SEVERITIES),
        job_id=form.integer("job"),
        server_id=form.integer("server"),
        text=form.text("text"),
        since=form.time("since"),
        until=form.time("until", end_of_day=True),
    )
