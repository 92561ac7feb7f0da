"""Telling the admins what is wrong: stuck jobs, late deliveries, servers that do not wake.

Each alert is claimed in ``alerts_sent`` (see mail.alert_admins), so several
nodes running cron at once send it once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select

from graderqueue.config import Settings
from graderqueue.maintenance import mail
from graderqueue.store.db import Database
from graderqueue.store.models import (
    Delivery,
    DeliveryState,
    Job,
    JobStatus,
    Server,
    utcnow,
)

log = logging.getLogger(__name__)

# Jobs listed in an alert; the rest are counted.
ALERT_SAMPLE = 20


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
