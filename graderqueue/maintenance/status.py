"""``graderqueue status``: the queue, its servers, deliveries and alerts on one screen.

:func:`collect` reads everything in one read transaction and returns plain
JSON-ready values; ``cli/status.py`` prints them as text or JSON. Every
figure comes from what the queue already records, through indexed columns
(live jobs by status, pending deliveries, recent events), so the cost does
not grow with the history kept. :func:`server_counts` is shared with
autoscaling, so both tell the same story about which servers are alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.admin import server_states
from graderqueue.admin.server_states import ASLEEP, BUSY, POLLING
from graderqueue.config import Settings
from graderqueue.queue import waiting
from graderqueue.registry.operations import stopped
from graderqueue.store import events
from graderqueue.store.models import (
    Delivery,
    DeliveryState,
    Event,
    Job,
    JobStatus,
    Platform,
    ServerType,
    utcnow,
)

# Alerts listed (the rest are counted); alerts and given-up deliveries are
# shown for this long back.
ALERTS_SHOWN = 5
RECENT = timedelta(days=1)


def iso(value: datetime | None) -> str | None:
    return f"{value:%Y-%m-%dT%H:%M:%SZ}" if value is not None else None


def _age(oldest: datetime | None, now: datetime) -> float | None:
    return round(max((now - oldest).total_seconds(), 0.0), 1) if oldest is not None else None


# -- servers --------------------------------------------------------------------


@dataclass
class ServerCounts:
    """One type's registered servers by what they are doing."""

    registered: int = 0
    alive: int = 0  # polled lately or hold a job
    busy: int = 0  # hold a job
    serving: int = 0  # alive and not drained: the capacity there is
    drained: int = 0  # registered and drained, alive or not
    asleep: int = 0  # no poll lately, wake-ups not failing (may be idle by design)
    # Silent, and its wake-ups fail or a lease it holds ran out (admin/server_states.py).
    lost: list[server_states.ServerView] = field(default_factory=list)
    running: int = 0  # jobs its servers hold
    serving_slots: list[int] = field(default_factory=list)  # their max_concurrent_jobs
    all_slots: list[int] = field(default_factory=list)


def recent_poll(settings: Settings, now: datetime) -> datetime:
    """Alive: polled after this (a waiting long-poll is poll_wait_sec old, as the servers page)."""
    return now - timedelta(seconds=max(settings.wakeup_recent_sec, settings.poll_wait_sec + 5))


def server_counts(session: Session, settings: Settings, now: datetime) -> dict[int, ServerCounts]:
    """Registered servers per type id, by state (the rules of admin/server_states.py)."""
    counts: dict[int, ServerCounts] = {}
    for server in server_states.servers(session, settings, now):
        c = counts.setdefault(server.type_id, ServerCounts())
        c.registered += 1
        c.running += server.held
        c.drained += server.drained
        c.all_slots.append(server.max_jobs)
        if server.state in (BUSY, POLLING):
            c.alive += 1
            c.busy += server.state == BUSY
            if not server.drained:
                c.serving += 1
                c.serving_slots.append(server.max_jobs)
        elif server.state == ASLEEP:
            c.asleep += 1
        else:  # lost, or unreachable on its way to it
            c.lost.append(server)
    return counts


# -- the summary ----------------------------------------------------------------


def collect(session: Session, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Everything `graderqueue status` shows, as JSON-ready values."""
    now = now or utcnow()
    types = session.execute(select(ServerType.id, ServerType.name).order_by(ServerType.name)).all()
    queued = waiting.summary(session)
    halted = stopped(session)
    return {
        "time": iso(now),
        "dispatch": {
            "paused": halted.queue_paused,
            "paused_types": halted.paused_types,
            "drained_servers": halted.drained_servers,
        },
        "queue": _queue(session, queued, [name for _, name in types]),
        "servers": _servers(session, settings, now, types),
        "delivery": _delivery(session, now),
        "alerts": _alerts(session, now),
        "fair_share": _fair_share(session, queued),
    }


def _queue(session: Session, queued: dict[str, Any], type_names: list[str]) -> dict[str, Any]:
    counts = dict(
        session.execute(
            select(Job.status, func.count())
            .where(Job.status.in_([JobStatus.SENT, JobStatus.HELD, JobStatus.ERROR]))
            .group_by(Job.status)
        ).all()
    )
    by_type = {row["type"]: row for row in queued["by_type"]}
    return {
        "waiting": queued["waiting"],
        "oldest_waiting_sec": queued["oldest_waiting_sec"],
        "running": counts.get(JobStatus.SENT, 0),
        "held": counts.get(JobStatus.HELD, 0),
        "failed": counts.get(JobStatus.ERROR, 0),
        "finished_recently": queued["throughput"]["finished"],
        "recent_window_sec": queued["throughput"]["window_sec"],
        "by_type": [
            {
                "type": name,
                "waiting": by_type.get(name, {}).get("waiting", 0),
                "oldest_waiting_sec": by_type.get(name, {}).get("oldest_waiting_sec"),
            }
            for name in type_names
        ],
    }


def _servers(
    session: Session, settings: Settings, now: datetime, types: list[Any]
) -> dict[str, Any]:
    counts = server_counts(session, settings, now)
    rows, lost = [], []
    for type_id, name in types:
        c = counts.get(type_id, ServerCounts())
        rows.append(
            {
                "type": name,
                "registered": c.registered,
                "alive": c.alive,
                "busy": c.busy,
                "drained": c.drained,
                "asleep": c.asleep,
                "lost": len(c.lost),
            }
        )
        lost += [
            {
                "name": s.name,
                "type": name,
                "last_poll": iso(s.last_poll),
                "wakeup_fails": s.wakeup_fails,
            }
            for s in c.lost
        ]
    return {"by_type": rows, "lost": lost}


def _delivery(session: Session, now: datetime) -> dict[str, Any]:
    pending = Delivery.state == DeliveryState.PENDING
    total, oldest = session.execute(
        select(func.count(), func.min(Delivery.created_at)).where(pending)
    ).one()
    failing = []
    for platform_id, name, count, attempts in session.execute(
        select(Delivery.platform_id, Platform.name, func.count(), func.max(Delivery.attempts))
        .join(Platform, Platform.id == Delivery.platform_id)
        .where(pending, Delivery.attempts > 0)
        .group_by(Delivery.platform_id, Platform.name)
        .order_by(Platform.name)
    ):
        last_error = session.scalar(
            select(Delivery.last_error)
            .where(pending, Delivery.platform_id == platform_id, Delivery.attempts > 0)
            .order_by(Delivery.last_attempt_at.desc())
            .limit(1)
        )
        failing.append(
            {"platform": name, "pending": count, "attempts": attempts, "last_error": last_error}
        )
    given_up = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.state == DeliveryState.GIVEN_UP, Delivery.last_attempt_at >= now - RECENT)
    )
    return {
        "pending": total,
        "oldest_pending_sec": _age(oldest, now),
        "failing": failing,
        "given_up_recently": given_up,
    }


def _alerts(session: Session, now: datetime) -> dict[str, Any]:
    recent = (Event.kind == events.ALERT_SENT, Event.time >= now - RECENT)
    total = session.scalar(select(func.count()).select_from(Event).where(*recent))
    rows = session.execute(
        select(Event.time, Event.message)
        .where(*recent)
        .order_by(Event.time.desc())
        .limit(ALERTS_SHOWN)
    ).all()
    return {
        "recent": total,
        "window_sec": int(RECENT.total_seconds()),
        "latest": [{"time": iso(time), "message": message} for time, message in rows],
    }


def _fair_share(session: Session, queued: dict[str, Any]) -> list[dict[str, Any]]:
    """Each platform's weight, jobs queued and cap; its share of hand-outs while all wait."""
    waiting_by: dict[str, int] = {}
    for row in queued["by_platform"]:  # a platform may have rows for several ways in
        waiting_by[row["platform"]] = waiting_by.get(row["platform"], 0) + row["waiting"]
    platforms = session.execute(
        select(Platform.name, Platform.weight, Platform.max_queued, Platform.disabled).order_by(
            Platform.name
        )
    ).all()
    # Within one priority, platforms with jobs waiting share hand-outs by weight.
    competing = sum(p.weight for p in platforms if waiting_by.get(p.name, 0) > 0)
    return [
        {
            "platform": p.name,
            "weight": p.weight,
            "queued": waiting_by.get(p.name, 0),
            "max_queued": p.max_queued,
            "disabled": bool(p.disabled),
            "share": (
                round(p.weight / competing, 3) if competing and waiting_by.get(p.name) else None
            ),
        }
        for p in platforms
    ]
