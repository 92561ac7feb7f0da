"""Periodic maintenance (PROTOCOL.md "Periodic maintenance"): ``graderqueue cron``.

Every run (each minute): jobs that failed too often become ``error``,
servers whose wake-ups failed are tried again, and the admins are e-mailed
when jobs are stuck or results do not reach their platforms. Hourly (``cron
--hourly``): old jobs, results and events are deleted, dead token-registered
servers removed, expired tokens and stale listeners dropped, and the admins
told about servers that do not wake up.

Idempotent and safe on several nodes at once: the every-run steps guard
each change in the database, alerts are claimed in ``alerts_sent``, and the
hourly part runs under a named lease (``locks``) so one node at a time does
the heavy deletes.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.dispatch import wakeups
from graderqueue.errors import Unavailable
from graderqueue.logs import describe_error
from graderqueue.maintenance import mail
from graderqueue.queue import states
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Event,
    InterfaceToken,
    Job,
    JobStatus,
    JobType,
    Listener,
    Lock,
    Result,
    SeenTokenId,
    Server,
    utcnow,
)

log = logging.getLogger(__name__)

HOURLY_LOCK = "cron-hourly"
# Longer than any hourly run; a node that dies holding it delays the next
# run by at most this much.
# Rows changed or deleted per transaction: short transactions keep SQLite's
# write lock and MariaDB's row locks from holding up the queue.
BATCH = 500
ALERT_SAMPLE = 20

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


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


# -- named leases ---------------------------------------------------------------


def acquire_lease(db: Database, name: str, holder: str, seconds: float) -> bool:
    """Take the lease ``name`` if free, expired or already ours, in one transaction."""
    now = utcnow()
    try:
        with db.transaction() as session:
            row = session.get(Lock, name, with_for_update=True)
            if row is None:
                session.add(
                    Lock(name=name, holder=holder, expires_at=now + timedelta(seconds=seconds))
                )
                session.flush()
            elif row.holder == holder or row.expires_at <= now:
                row.holder = holder
                row.expires_at = now + timedelta(seconds=seconds)
            else:
                return False
    except IntegrityError:
        return False  # another node inserted it at the same moment
    except Unavailable:
        # A deadlock or lock wait with another node taking it now, or a
        # database that is down: a plain read tells which (and raises if down).
        with db.reading() as session:
            session.get(Lock, name)
        return False
    return True


def release_lease(db: Database, name: str, holder: str) -> None:
    with db.transaction() as session:
        session.execute(delete(Lock).where(Lock.name == name, Lock.holder == holder))


# -- every run ------------------------------------------------------------------


def alert_stuck_jobs(db: Database, settings: Settings) -> bool:
    """At least ``warn_nb`` jobs queued, sent or in error for over ``warn_seconds``."""
    cutoff = utcnow() - timedelta(seconds=settings.warn_seconds)
    stuck = and_(
        Job.status.in_([JobStatus.QUEUED, JobStatus.SENT, JobStatus.ERROR]),
        Job.received_time < cutoff,
    )
    with db.reading() as session:
        counts = dict(
            session.execute(
                select(Job.status, func.count()).where(stuck).group_by(Job.status)
            ).all()
        )
        total = sum(counts.values())
        if total < settings.warn_nb:
            return False
        sample = session.execute(
            select(Job.id, Job.status, Job.nb_fails, Job.received_time, Job.name)
            .where(stuck)
            .order_by(Job.received_time)
            .limit(ALERT_SAMPLE)
        ).all()
    by_status = ", ".join(f"{counts[s]} {s}" for s in sorted(counts))
    body = [
        f"{total} jobs have been waiting for more than {settings.warn_seconds} s "
        f"or are in error ({by_status}).",
        "",
        "Oldest:",
        *(
            f"  #{r.id} {r.status} fails={r.nb_fails} received {r.received_time:%Y-%m-%d %H:%M:%S}"
            f" UTC  {r.name}"
            for r in sample
        ),
    ]
    subject = f"[graderqueue] jobs stuck or in error ({total})"
    return mail.alert_admins(db, settings, "jobs_stuck", subject, "\n".join(body) + "\n")


def alert_late_deliveries(db: Database, settings: Settings) -> bool:
    """At least ``warn_nb`` results still not accepted by their platform after ``warn_seconds``."""
    cutoff = utcnow() - timedelta(seconds=settings.warn_seconds)
    late = and_(Delivery.state == DeliveryState.PENDING, Delivery.created_at < cutoff)
    with db.reading() as session:
        total = session.scalar(select(func.count()).select_from(Delivery).where(late)) or 0
        if total < settings.warn_nb:
            return False
        sample = session.execute(
            select(Delivery.job_id, Delivery.attempts, Delivery.last_error)
            .where(late)
            .order_by(Delivery.created_at)
            .limit(ALERT_SAMPLE)
        ).all()
    body = [
        f"{total} results have not reached their platform for more than "
        f"{settings.warn_seconds} s; the queue keeps trying.",
        "",
        *(f"  job #{r.job_id}: {r.attempts} attempts, last error: {r.last_error}" for r in sample),
    ]
    subject = f"[graderqueue] results not delivered ({total})"
    return mail.alert_admins(db, settings, "deliveries_late", subject, "\n".join(body) + "\n")


# -- hourly ---------------------------------------------------------------------


def _delete_in_batches(
    db: Database, pick: Callable[[Session], list[Any]], remove: Callable[[Session, list[Any]], None]
) -> int:
    total = 0
    while True:
        with db.transaction() as session:
            keys = pick(session)
            if keys:
                remove(session, keys)
        total += len(keys)
        if len(keys) < BATCH:
            return total


def purge_old_jobs(db: Database, keep_days: int) -> int:
    """Delete done and error jobs older than ``keep_days`` with their rows elsewhere.

    Never a queued or sent job, and never a done job whose result is still
    owed to its platform. Dependent rows are deleted explicitly, not left to
    ON DELETE CASCADE, so the purge does not depend on the engine enforcing it.
    """
    cutoff = utcnow() - timedelta(days=keep_days)
    owed = exists().where(Delivery.job_id == Job.id, Delivery.state == DeliveryState.PENDING)
    old = or_(
        and_(Job.status == JobStatus.DONE, Job.grading_end_time < cutoff),
        and_(Job.status == JobStatus.ERROR, Job.received_time < cutoff),
    )

    def pick(session: Session) -> list[int]:
        query = select(Job.id).where(old, ~owed).order_by(Job.id).limit(BATCH)
        if db.dialect != "sqlite":
            query = query.with_for_update(skip_locked=True)
        return list(session.scalars(query))

    def remove(session: Session, ids: list[int]) -> None:
        deliveries = select(Delivery.id).where(Delivery.job_id.in_(ids))
        for statement in (
            delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(deliveries)),
            delete(Delivery).where(Delivery.job_id.in_(ids)),
            delete(Result).where(Result.job_id.in_(ids)),
            delete(JobType).where(JobType.job_id.in_(ids)),
            # Re-checked here: a redelivery may have been asked meanwhile.
            delete(Job).where(Job.id.in_(ids), old),
        ):
            session.execute(statement.execution_options(synchronize_session=False))

    return _delete_in_batches(db, pick, remove)


def purge_old_events(db: Database, keep_days: int) -> int:
    cutoff = utcnow() - timedelta(days=keep_days)

    def pick(session: Session) -> list[int]:
        return list(
            session.scalars(
                select(Event.id).where(Event.time < cutoff).order_by(Event.id).limit(BATCH)
            )
        )

    def remove(session: Session, ids: list[int]) -> None:
        session.execute(delete(Event).where(Event.id.in_(ids)))

    return _delete_in_batches(db, pick, remove)


def remove_dead_token_servers(db: Database, max_wakeup_fails: int) -> int:
    """Token-registered servers that stopped answering wake-ups and hold no job.

    Such servers come and go with cloud machines; one that comes back
    registers again on its first request. Done and error jobs it graded
    forget it (``sent_to`` becomes NULL): its name stays in the event log.
    """
    live = exists().where(
        Job.sent_to == Server.id, Job.status.in_([JobStatus.QUEUED, JobStatus.SENT])
    )
    dead = and_(Server.token_id.is_not(None), Server.wakeup_fails >= max_wakeup_fails, ~live)
    removed = 0
    with db.reading() as session:
        ids = list(session.scalars(select(Server.id).where(dead)))
    for server_id in ids:
        with db.transaction() as session:
            # Locked and re-checked: the server may have polled (which resets
            # its failures) or taken a job since the read.
            server = session.scalars(
                select(Server).where(Server.id == server_id, dead).with_for_update()
            ).first()
            if server is None:
                continue
            session.execute(
                update(Job)
                .where(Job.sent_to == server_id)
                .values(sent_to=None)
                .execution_options(synchronize_session=False)
            )
            events.log_event(
                session,
                events.SERVER_REMOVED,
                server_id=server_id,
                message=f"{server.name}: {server.wakeup_fails} failed wake-ups, removed by cron",
            )
            session.delete(server)
            removed += 1
    return removed


def purge_expired(db: Database, listener_stale_sec: float) -> dict[str, int]:
    """Interface tokens and replay-guard token ids past their expiry, dead listeners."""
    now = utcnow()
    stale = now - timedelta(seconds=listener_stale_sec * 5)
    with db.transaction() as session:
        return {
            "interface tokens": session.execute(
                delete(InterfaceToken).where(InterfaceToken.expires_at < now)
            ).rowcount,
            "seen token ids": session.execute(
                delete(SeenTokenId).where(SeenTokenId.expires_at < now)
            ).rowcount,
            "stale listeners": session.execute(
                delete(Listener).where(Listener.heartbeat < stale)
            ).rowcount,
        }


def alert_servers_not_waking(db: Database, settings: Settings) -> bool:
    with db.reading() as session:
        rows = session.execute(
            select(Server.name, Server.wakeup_fails, Server.last_wakeup_time, Server.last_poll_time)
            .where(Server.wakeup_fails >= settings.warn_wakeup_fails)
            .order_by(Server.wakeup_fails.desc(), Server.name)
        ).all()
    if not rows:
        return False

    def when(value: datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "never"

    body = [
        f"{len(rows)} grading servers do not answer wake-ups:",
        "",
        *(
            f"  {r.name}: {r.wakeup_fails} failed wake-ups, last tried {when(r.last_wakeup_time)},"
            f" last poll {when(r.last_poll_time)}"
            for r in rows
        ),
    ]
    subject = f"[graderqueue] grading servers do not wake up ({len(rows)})"
    return mail.alert_admins(db, settings, "servers_not_waking", subject, "\n".join(body) + "\n")


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


def run(db: Database, settings: Settings, *, hourly: bool = False) -> Report:
    report = Report()
    report.errored_jobs = _step(
        report, "error jobs", lambda: states.fail_exhausted(db, settings.max_fails)
    )
    tried = _step(report, "wake-up retries", lambda: wakeups.retry_failed(db, settings))
    report.wakeups_tried, report.wakeups_ok = tried if tried is not None else (None, None)
    _alert(report, "stuck jobs alert", "jobs stuck", lambda: alert_stuck_jobs(db, settings))
    _alert(
        report,
        "deliveries alert",
        "results not delivered",
        lambda: alert_late_deliveries(db, settings),
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
    holder = holder_name()
    taken = _step(
        report,
        "hourly lease",
        lambda: acquire_lease(db, HOURLY_LOCK, holder, settings.hourly_lease_sec),
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
            ("purge jobs", lambda: {"jobs": purge_old_jobs(db, keep)}),
            ("purge events", lambda: {"events": purge_old_events(db, keep)}),
            (
                "remove servers",
                lambda: {
                    "servers": remove_dead_token_servers(db, settings.token_server_max_wakeup_fails)
                },
            ),
            ("purge expired", lambda: purge_expired(db, settings.listener_stale_sec)),
        ]
        for name, action in steps:
            report.purged.update(_step(report, name, action) or {})
        _alert(
            report,
            "servers alert",
            "servers not waking up",
            lambda: alert_servers_not_waking(db, settings),
        )
        report.hourly = "done" if len(report.problems) == failed_before else "done, with errors"
    finally:
        _step(report, "release lease", lambda: release_lease(db, HOURLY_LOCK, holder))
