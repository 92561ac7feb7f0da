"""The shared queue's state as gauges, read from the database at each scrape.

Every node reads the same database, so every node reports the same values:
a dashboard or an alert takes ``max`` (or ``avg``) of them over the nodes,
never their sum. Each type and each platform is always listed, at 0 when
nothing is there, so "no alive server" is a 0 and not a missing series.

If the database cannot be read, the scrape still answers (this process's
counters are worth having) with ``graderqueue_database_up 0`` and no queue
gauges.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.maintenance import autoscale
from graderqueue.registry import operations
from graderqueue.store.db import Database
from graderqueue.store.models import (
    Delivery,
    DeliveryState,
    Job,
    JobStatus,
    JobType,
    Platform,
    Server,
    ServerType,
    utcnow,
)

log = logging.getLogger(__name__)

JOBS = Job.__table__
JOB_TYPES = JobType.__table__
SERVERS = Server.__table__
TYPES = ServerType.__table__


@dataclass
class TypeState:
    waiting: int = 0
    oldest_waiting_sec: float = 0.0
    grading: int = 0
    registered: int = 0
    alive: int = 0
    busy: int = 0
    drained: int = 0
    paused: bool = False
    wanted: int = 0  # servers `graderqueue autoscale` would run (docs/AUTOSCALING.md)


@dataclass
class QueueState:
    types: dict[str, TypeState] = field(default_factory=dict)
    queue_paused: bool = False
    pending: dict[str, int] = field(default_factory=dict)  # by platform
    oldest_pending_sec: dict[str, float] = field(default_factory=dict)


def alive_since(settings: Settings, now: datetime) -> datetime:
    """A server that polled after this is alive (as the admin pages' "polling"): a
    long-poll may be up to poll_wait_sec old and still waiting."""
    return now - timedelta(seconds=max(settings.wakeup_recent_sec, settings.poll_wait_sec + 5))


def read_state(session: Session, settings: Settings, now: datetime | None = None) -> QueueState:
    now = now or utcnow()
    names = dict(session.execute(select(TYPES.c.id, TYPES.c.name)).all())
    state = QueueState(types={name: TypeState() for name in names.values()})
    _jobs(session, names, state, now)
    _servers(session, settings, names, state, now)
    stopped = operations.stopped(session)
    state.queue_paused = stopped.queue_paused
    for name in stopped.paused_types:
        state.types.setdefault(name, TypeState()).paused = True
    _deliveries(session, state, now)
    for name, wanted in autoscale.wanted_servers(session, settings).items():
        state.types.setdefault(name, TypeState()).wanted = wanted
    return state


def _jobs(session: Session, names: dict[int, str], state: QueueState, now: datetime) -> None:
    t, j = JOB_TYPES.c, JOBS.c
    waiting = session.execute(
        select(t.type_id, func.count()).where(t.status == JobStatus.QUEUED).group_by(t.type_id)
    ).all()
    for type_id, count in waiting:
        name = names.get(type_id)
        if name is None or not count:
            continue
        state.types[name].waiting = count
        # Read along ix_jobs_status_received, oldest first: it stops at the
        # first queued job of the type, however long the queue.
        oldest = session.scalar(
            select(j.received_time)
            .where(
                j.status == JobStatus.QUEUED,
                exists().where(t.job_id == j.id, t.type_id == type_id),
            )
            .order_by(j.received_time)
            .limit(1)
        )
        if oldest is not None:
            state.types[name].oldest_waiting_sec = max(0.0, (now - oldest).total_seconds())
    grading = session.execute(
        select(SERVERS.c.type_id, func.count())
        .select_from(JOBS.join(SERVERS, SERVERS.c.id == j.sent_to))
        .where(j.status == JobStatus.SENT)
        .group_by(SERVERS.c.type_id)
    ).all()
    for type_id, count in grading:
        if type_id in names:
            state.types[names[type_id]].grading = count


def _servers(
    session: Session, settings: Settings, names: dict[int, str], state: QueueState, now: datetime
) -> None:
    j, s = JOBS.c, SERVERS.c
    # Jobs a server really holds: sent to it, lease still running.
    held = dict(
        session.execute(
            select(j.sent_to, func.count())
            .where(j.status == JobStatus.SENT, j.lease_expires > now)
            .group_by(j.sent_to)
        ).all()
    )
    recent = alive_since(settings, now)
    for server_id, type_id, drained, last_poll in session.execute(
        select(s.id, s.type_id, s.drained, s.last_poll_time)
    ):
        if type_id not in names:
            continue
        counts = state.types[names[type_id]]
        counts.registered += 1
        holds = held.get(server_id, 0) > 0
        counts.busy += holds
        if drained:
            counts.drained += 1
        elif holds or (last_poll is not None and last_poll >= recent):
            counts.alive += 1  # drained servers take nothing: never alive for their type


def _deliveries(session: Session, state: QueueState, now: datetime) -> None:
    names = dict(session.execute(select(Platform.id, Platform.name)).all())
    state.pending = dict.fromkeys(names.values(), 0)
    state.oldest_pending_sec = dict.fromkeys(names.values(), 0.0)
    for platform_id, count, oldest in session.execute(
        select(Delivery.platform_id, func.count(), func.min(Delivery.created_at))
        .where(Delivery.state == DeliveryState.PENDING)
        .group_by(Delivery.platform_id)
    ):
        name = names.get(platform_id, f"#{platform_id}")
        state.pending[name] = count
        state.oldest_pending_sec[name] = max(0.0, (now - oldest).total_seconds())


def _gauge(name: str, doc: str, labels: list[str], values: dict) -> GaugeMetricFamily:  # type: ignore[type-arg]
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric([key] if labels else [], float(value))
    return family


# (metric name, help, TypeState attribute)
TYPE_GAUGES = [
    ("graderqueue_jobs_waiting", "Jobs queued for the type (a job several types can run counts "
     "for each).", "waiting"),
    ("graderqueue_oldest_waiting_seconds", "Age of the oldest job queued for the type (0: none).",
     "oldest_waiting_sec"),
    ("graderqueue_jobs_grading", "Jobs sent to servers of the type and not yet back.", "grading"),
    ("graderqueue_servers_registered", "Servers of the type.", "registered"),
    ("graderqueue_servers_alive", "Servers of the type that can take its jobs: not drained, and "
     "polled lately or grading.", "alive"),
    ("graderqueue_servers_busy", "Servers of the type holding a job (drained ones too).", "busy"),
    ("graderqueue_servers_drained", "Drained servers of the type (`server drain`).", "drained"),
    ("graderqueue_dispatch_paused", "1 if the type is paused (`pause --type`).", "paused"),
    ("graderqueue_servers_wanted", "Servers `graderqueue autoscale` wants for the type now.",
     "wanted"),
]  # fmt: skip


class QueueGauges(Collector):
    """A collector read at scrape time: the queue as the database has it now."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.db.reading() as session:
                state = read_state(session, self.settings)
        except Exception:
            log.warning("metrics: cannot read the queue's state", exc_info=True)
            yield _gauge(
                "graderqueue_database_up", "1 if the scrape read the database.", [], {"": 0}
            )
            return
        yield _gauge("graderqueue_database_up", "1 if the scrape read the database.", [], {"": 1})
        for name, doc, attribute in TYPE_GAUGES:
            values = {t: getattr(s, attribute) for t, s in state.types.items()}
            yield _gauge(name, doc, ["type"], values)
        yield _gauge(
            "graderqueue_queue_paused",
            "1 if dispatch is paused for every type (`graderqueue pause`).",
            [],
            {"": state.queue_paused},
        )
        yield _gauge(
            "graderqueue_deliveries_pending",
            "Results owed to the platform and not delivered yet (the delivery backlog).",
            ["platform"],
            state.pending,
        )
        yield _gauge(
            "graderqueue_oldest_pending_delivery_seconds",
            "Age of the platform's oldest result not delivered yet (0: none).",
            ["platform"],
            state.oldest_pending_sec,
        )
