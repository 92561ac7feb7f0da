"""Periodic maintenance (PROTOCOL.md "Periodic maintenance"): ``graderqueue cron``.

Every run (each minute): jobs that failed too often become ``error``,
servers whose wake-ups failed are tried again, and the admins are e-mailed
when jobs are stuck or results do not reach their platforms. Hourly (``cron
--hourly``): old jobs, results and events are deleted, then stored files no
lab or kept job refers to (after ``file_grace_sec``), dead token-registered
servers removed, expired tokens and stale listeners dropped, and the admins
told about servers that do not wake up.

Idempotent and safe on several nodes at once: the every-run steps guard
each change in the database, alerts are claimed in ``alerts_sent``, and the
hourly part runs under a named lease (``locks``) so one node at a time does
the heavy deletes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from graderqueue.config import Settings
from graderqueue.dispatch import wakeups
from graderqueue.files import cleanup
from graderqueue.logs import describe_error, work_unit
from graderqueue.maintenance import alerts, leases, purge
from graderqueue.queue import idempotency, runs, states
from graderqueue.store.db import Database

log = logging.getLogger(__name__)

HOURLY_LOCK = "cron-hourly"

T = TypeVar("T")


@dataclass
class Report:
    """What a run did. ``None`` means the step failed (see ``problems``): never shown as 0."""

    errored_jobs: int | None = 0
    wakeups_tried: int | None = 0
    wakeups_ok: int | None = 0
    alerts: list[str] = field(default_factory=list)
    alert_failed: bool = False
    hourly: str | None = "not asked"
    purged: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.errored_jobs is not None:
            out.append(f"jobs put in error: {self.errored_jobs}")
        if self.wakeups_tried is not None:
            out.append(f"wake-ups retried: {self.wakeups_tried} ({self.wakeups_ok} answered)")
        if self.alerts or not self.alert_failed:
            out.append(f"alerts e-mailed: {', '.join(self.alerts) or 'none'}")
        if self.hourly is not None:
            out.append(f"hourly part: {self.hourly}")
        out += [f"deleted {what}: {count}" for what, count in self.purged.items()]
        return out


# -- the whole run --------------------------------------------------------------


def _step(report: Report, name: str, action: Callable[[], T]) -> T | None:
    """One step's failure (database down, SMTP down) must not skip the others.

    The failure is one line in ``report.problems``; the traceback is logged
    at DEBUG, for ``graderqueue cron -v``: a database outage fails every
    step every minute, and cron mails whatever is printed.
    """
    try:
        return action()
    except Exception as exc:
        log.debug("maintenance step %s failed", name, exc_info=True)
        report.problems.append(f"{name}: {describe_error(exc)}")
        return None


@work_unit  # the lines of one run share a request id
def run(db: Database, settings: Settings, *, hourly: bool = False) -> Report:
    report = Report()
    report.errored_jobs = _step(
        report, "error jobs", lambda: states.fail_exhausted(db, settings.max_fails)
    )
    # A run a restart left half made or half cancelled (queue/runs.py).
    _step(report, "runs", lambda: runs.resume(db, settings))
    tried = _step(report, "wake-up retries", lambda: wakeups.retry_failed(db, settings))
    report.wakeups_tried, report.wakeups_ok = tried if tried is not None else (None, None)
    _alert(report, "stuck jobs alert", "jobs stuck", lambda: alerts.alert_stuck_jobs(db, settings))
    _alert(
        report,
        "deliveries alert",
        "results not delivered",
        lambda: alerts.alert_late_deliveries(db, settings),
    )
    if hourly:
        _run_hourly(db, settings, report)
    return report


def _alert(report: Report, step: str, what: str, action: Callable[[], bool]) -> None:
    sent = _step(report, step, action)
    if sent is None:
        report.alert_failed = True
    elif sent:
        report.alerts.append(what)


def _run_hourly(db: Database, settings: Settings, report: Report) -> None:
    holder = leases.holder_name()
    taken = _step(
        report,
        "hourly lease",
        lambda: leases.acquire_lease(db, HOURLY_LOCK, holder, settings.hourly_lease_sec),
    )
    if taken is None:
        report.hourly = None
        return
    if not taken:
        report.hourly = "skipped: another node is running it"
        return
    failed_before = len(report.problems)
    try:
        keep = settings.keep_old_days
        steps: list[tuple[str, Callable[[], dict[str, int]]]] = [
            ("purge jobs", lambda: {"jobs": purge.purge_old_jobs(db, keep)}),
            ("purge events", lambda: {"events": purge.purge_old_events(db, keep)}),
            ("purge runs", lambda: purge.purge_old_runs(db, keep)),
            (
                "purge idempotency keys",
                lambda: {
                    "idempotency keys": idempotency.purge(db, settings.idempotency_keep_hours)
                },
            ),
            (
                "purge files",
                lambda: {"files": cleanup.remove_unreferenced(db, settings.file_grace_sec)},
            ),
            (
                "remove servers",
                lambda: {
                    "servers": purge.remove_dead_token_servers(
                        db, settings.token_server_max_wakeup_fails
                    )
                },
            ),
            (
                "purge expired",
                lambda: purge.purge_expired(
                    db, settings.listener_stale_sec, settings.admin_login_window_sec
                ),
            ),
        ]
        for name, action in steps:
            report.purged.update(_step(report, name, action) or {})
        _alert(
            report,
            "servers alert",
            "servers not waking up",
            lambda: alerts.alert_servers_not_waking(db, settings),
        )
        report.hourly = "done" if len(report.problems) == failed_before else "done, with errors"
    finally:
        _step(report, "release lease", lambda: leases.release_lease(db, HOURLY_LOCK, holder))
