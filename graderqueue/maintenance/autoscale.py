"""How many grading servers each server type wants: ``graderqueue autoscale``.

:func:`gather` reads each type's figures; :func:`decide`, a pure function,
turns them, the type's policy (settings) and the last decision into the
number wanted and the reason; :func:`run` remembers the decisions in
``autoscale_state`` under a row lock, so that nodes running it from cron
share the scale-down delay. "Slots" are jobs running at once: a server has
``max_concurrent_jobs`` of them. docs/AUTOSCALING.md explains it all.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from graderqueue.admin.durations import SecondsBetween
from graderqueue.config import Settings
from graderqueue.errors import ConfigError, Unavailable
from graderqueue.maintenance.status import ServerCounts, server_counts
from graderqueue.registry.operations import stopped
from graderqueue.store.db import Database
from graderqueue.store.models import (
    AutoscaleState,
    Job,
    JobStatus,
    JobType,
    Server,
    ServerToken,
    ServerType,
    utcnow,
)

DEMANDS = ("burst", "long", "backlog")
WINDOWS = ("burst", "medium", "long")


@dataclass(frozen=True)
class Policy:
    """The settings that bear on one type's decision (:func:`policy_for`)."""

    target_wait_sec: float = 120.0
    burst_ratio: float = 1.3
    long_ratio: float = 1.6
    default_job_sec: float = 60.0
    scale_down_delay_sec: float = 1800.0
    min_servers: int = 0
    max_servers: int = 10
    windows_sec: tuple[int, int, int] = (60, 300, 900)  # burst, medium, long


@dataclass(frozen=True)
class Figures:
    """What autoscaling reads about one server type."""

    type_id: int
    name: str
    alive: int = 0  # servers that polled lately or hold a job
    busy: int = 0  # of those, holding a job
    serving: int = 0  # of those, not drained: the capacity there is
    waiting: int = 0  # queued jobs this type may run (a job may count for several types)
    running: int = 0  # jobs its servers hold
    paused: bool = False  # the type or the whole queue
    slots_per_server: float = 1.0
    job_sec: float | None = None  # mean duration of its jobs that ended in the long window
    usage: tuple[float, float, float] = (0.0, 0.0, 0.0)  # mean busy slots per window


@dataclass(frozen=True)
class Memory:
    """What was decided before for a type: the number, and when it last changed."""

    wanted: int
    changed_at: datetime


@dataclass(frozen=True)
class Decision:
    wanted: int
    previous: int
    demand: dict[str, float]  # slots each demand asks for
    reason: str


@dataclass(frozen=True)
class Plan:
    """One type's figures, policy and decision: one entry of the JSON."""

    figures: Figures
    policy: Policy
    decision: Decision

    def as_json(self) -> dict[str, Any]:
        d, p = self.decision, self.policy
        figures = {k: v for k, v in asdict(self.figures).items() if k not in ("type_id", "name")}
        figures["usage"] = dict(
            zip(WINDOWS, (round(u, 3) for u in self.figures.usage), strict=True)
        )
        demand = {name: round(slots, 3) for name, slots in d.demand.items()}
        return {
            **figures,
            "demand": demand,
            "min": p.min_servers,
            "max": p.max_servers,
            "previous": d.previous,
            "wanted": d.wanted,
            "reason": d.reason,
        }


# -- the decision: a pure function ----------------------------------------------


def decide(f: Figures, p: Policy, memory: Memory | None, now: datetime) -> Decision:
    """The servers ``f``'s type wants now, and why.

    Wanted: enough slots for the largest demand (burst, long, backlog), in
    servers, within [min, max]. Fewer than before only once the number has
    not changed for the scale-down delay; more at once. A paused type keeps
    the number it had. Without memory (a first run) "before" is the servers
    serving now, as of now.
    """
    job_sec = f.job_sec if f.job_sec is not None else p.default_job_sec
    demand = {
        "burst": f.usage[0] * p.burst_ratio,
        "long": max(f.usage[1], f.usage[2]) * p.long_ratio,
        "backlog": f.running + f.waiting * job_sec / p.target_wait_sec,
    }
    driver = max(DEMANDS, key=lambda name: demand[name])
    # A hundredth of a server is noise (3 slots may come out as 3.0000001);
    # but jobs waiting or running want a server, however short they are.
    needed = math.ceil(demand[driver] / f.slots_per_server - 0.01)
    needed = max(needed, 1) if f.waiting + f.running > 0 else needed
    reason = _why(driver, demand[driver], f, p, job_sec)
    wanted = _bounded(needed, p)
    if wanted != needed:
        reason += f"; {needed} bounded to [{p.min_servers}, {p.max_servers}]"
    previous = memory.wanted if memory is not None else f.serving
    since = memory.changed_at if memory is not None else now
    if f.paused:
        return Decision(_bounded(previous, p), previous, demand, "dispatch paused: kept as it was")
    left = p.scale_down_delay_sec - (now - since).total_seconds()
    if wanted < previous and left > 0:
        reason += f"; scale-down from {previous} waits {math.ceil(left)} s more (delay)"
        wanted = _bounded(previous, p)
    return Decision(wanted, previous, demand, reason)


def _bounded(servers: int, p: Policy) -> int:
    return min(max(servers, p.min_servers), p.max_servers)


def _why(driver: str, slots: float, f: Figures, p: Policy, job_sec: float) -> str:
    if slots <= 0:
        return "no demand"
    burst, medium, long = p.windows_sec
    if driver == "burst":
        return f"burst: {f.usage[0]:.2f} slots busy over {burst} s x {p.burst_ratio}"
    if driver == "long":
        window, used = (medium, f.usage[1]) if f.usage[1] >= f.usage[2] else (long, f.usage[2])
        return f"long: {used:.2f} slots busy over {window} s x {p.long_ratio}"
    return (
        f"backlog: {f.running} running + {f.waiting} waiting x {job_sec:.3g} s"
        f" / {p.target_wait_sec:g} s target wait"
    )


# -- settings -------------------------------------------------------------------


def policy_for(settings: Settings, type_name: str) -> Policy:
    """The type's policy from the settings; ConfigError names a bad one."""
    low, high = settings.autoscale_min_servers, settings.autoscale_max_servers
    limits = settings.autoscale_type_limits.get(type_name)
    if limits is not None:
        low, high = _limits(type_name, limits)
    windows = (
        settings.autoscale_burst_window_sec,
        settings.autoscale_medium_window_sec,
        settings.autoscale_long_window_sec,
    )
    ratios = (settings.autoscale_burst_ratio, settings.autoscale_long_ratio)
    if min(windows) < 1 or settings.autoscale_target_wait_sec <= 0 or min(ratios) < 0:
        raise ConfigError("autoscale windows and target wait must be positive, ratios not negative")
    if not 0 <= low <= high:
        raise ConfigError(f"autoscale limits for type {type_name}: need 0 <= min <= max")
    return Policy(
        target_wait_sec=settings.autoscale_target_wait_sec,
        burst_ratio=settings.autoscale_burst_ratio,
        long_ratio=settings.autoscale_long_ratio,
        default_job_sec=max(settings.autoscale_default_job_sec, 0.0),
        scale_down_delay_sec=settings.autoscale_scale_down_delay_sec,
        min_servers=low,
        max_servers=high,
        windows_sec=windows,
    )


def _limits(type_name: str, text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if match is None:
        raise ConfigError(f"autoscale_type_limits for {type_name}: {text!r} is not MIN-MAX (0-4)")
    return int(match[1]), int(match[2])


# -- the figures ----------------------------------------------------------------


def _mean_slots(*candidates: Iterable[int]) -> float:
    """The first non-empty list's mean job limit (0, "no limit", counts as 1)."""
    for slots in candidates:
        values = [max(n, 1) for n in slots]
        if values:
            return sum(values) / len(values)
    return 1.0


def _usage(session: Session, now: datetime, windows: tuple[int, ...]) -> dict[int, list[float]]:
    """Per type id: busy seconds in each window, then done jobs and their total duration.

    A job counts for the part of its grading inside each window (a running
    job up to now), on the type of the server that held it.
    """
    starts = [now - timedelta(seconds=w) for w in windows]

    def clipped(since: datetime, end: Any) -> Any:
        start = case((Job.grading_start_time < since, since), else_=Job.grading_start_time)
        if isinstance(end, datetime):  # a running job: it is busy up to now
            return func.sum(SecondsBetween(start, end))
        return func.sum(case((end > since, SecondsBetween(start, end)), else_=0.0))

    out: dict[int, list[float]] = {}
    for status, end, where in (
        (JobStatus.DONE, Job.grading_end_time, Job.grading_end_time >= min(starts)),
        (JobStatus.SENT, now, Job.grading_start_time.is_not(None)),
    ):
        duration = SecondsBetween(Job.grading_start_time, end)
        rows = session.execute(
            select(
                Server.type_id,
                *(clipped(since, end) for since in starts),
                func.count(),
                func.sum(duration),
            )
            .select_from(Job)
            .join(Server, Server.id == Job.sent_to)
            .where(Job.status == status, where)
            .group_by(Server.type_id)
        ).all()
        for type_id, *values in rows:
            totals = out.setdefault(type_id, [0.0] * (len(windows) + 2))
            if status == JobStatus.SENT:
                values[-2:] = [0, 0]  # running jobs have no duration yet
            for i, value in enumerate(values):
                # Clamped: nodes' clocks a little apart must not make load negative.
                totals[i] += max(float(value or 0), 0.0)
    return out


def _waiting(session: Session, type_ids: list[int]) -> dict[int, int]:
    # Naming every type lets the claim index (type_id, status, ...) serve the count.
    return dict(
        session.execute(
            select(JobType.type_id, func.count())
            .where(JobType.type_id.in_(type_ids), JobType.status == JobStatus.QUEUED)
            .group_by(JobType.type_id)
        ).all()
    )


def gather(session: Session, settings: Settings, now: datetime) -> list[Figures]:
    """The figures of every server type, by name."""
    types = session.execute(select(ServerType.id, ServerType.name).order_by(ServerType.name)).all()
    if not types:
        return []
    windows = policy_for(settings, "").windows_sec
    servers = server_counts(session, settings, now)
    usage = _usage(session, now, windows)
    waiting = _waiting(session, [t.id for t in types])
    tokens: dict[int, list[int]] = {}
    for type_id, slots in session.execute(
        select(ServerToken.type_id, ServerToken.max_concurrent_jobs)
    ):
        tokens.setdefault(type_id, []).append(slots)
    halted = stopped(session)
    figures = []
    for type_id, name in types:
        c = servers.get(type_id, ServerCounts())
        busy_sec = usage.get(type_id, [0.0] * (len(windows) + 2))
        done, total_sec = busy_sec[-2:]
        figures.append(
            Figures(
                type_id=type_id,
                name=name,
                alive=c.alive,
                busy=c.busy,
                serving=c.serving,
                waiting=waiting.get(type_id, 0),
                running=c.running,
                paused=halted.queue_paused or name in halted.paused_types,
                slots_per_server=round(
                    _mean_slots(c.serving_slots, c.all_slots, tokens.get(type_id, [])), 3
                ),
                job_sec=round(max(total_sec / done, 0.0), 3) if done else None,
                usage=(
                    busy_sec[0] / windows[0],
                    busy_sec[1] / windows[1],
                    busy_sec[2] / windows[2],
                ),
            )
        )
    return figures


# -- memory and the whole run ---------------------------------------------------


def _memory(session: Session, *, lock: bool) -> dict[int, Memory]:
    query = select(AutoscaleState).order_by(AutoscaleState.type_id)
    if lock:
        # In type order: two nodes lock the rows in the same order, no deadlock.
        query = query.with_for_update()
    return {
        row.type_id: Memory(row.wanted, row.changed_at)
        for row in session.scalars(query)
        if row.wanted is not None and row.changed_at is not None
    }


def plan(
    figures: list[Figures], settings: Settings, memory: dict[int, Memory], now: datetime
) -> list[Plan]:
    out = []
    for f in figures:
        policy = policy_for(settings, f.name)
        out.append(Plan(f, policy, decide(f, policy, memory.get(f.type_id), now)))
    return out


def wanted_servers(session: Session, settings: Settings) -> dict[str, int]:
    """Type name -> servers wanted now, as the next run would decide it (reads only)."""
    now = utcnow()
    plans = plan(gather(session, settings, now), settings, _memory(session, lock=False), now)
    return {p.figures.name: p.decision.wanted for p in plans}


def _ensure_rows(db: Database, type_ids: list[int]) -> None:
    """A state row for every type, so that :func:`run` can lock them all."""
    # Another node inserting them at the same moment (a duplicate key, or a
    # deadlock on MariaDB): they exist then. A database that is down fails the
    # transaction that follows, with its own message.
    with contextlib.suppress(IntegrityError, Unavailable), db.transaction() as session:
        missing = set(type_ids) - set(session.scalars(select(AutoscaleState.type_id)))
        for type_id in sorted(missing):
            session.add(AutoscaleState(type_id=type_id, updated_at=utcnow()))


def _record(session: Session, plans: list[Plan], now: datetime) -> None:
    decided = {p.figures.type_id: p.decision.wanted for p in plans}
    for row in session.scalars(select(AutoscaleState)):
        if row.type_id not in decided:
            continue
        if row.wanted != decided[row.type_id] or row.changed_at is None:
            row.wanted = decided[row.type_id]
            row.changed_at = now
        row.updated_at = now
    # Types removed since: their rows would only linger.
    session.execute(delete(AutoscaleState).where(AutoscaleState.type_id.not_in(list(decided))))


def run(db: Database, settings: Settings, *, dry_run: bool = False) -> list[Plan]:
    """Decide for every type and, unless ``dry_run``, remember the decisions.

    The figures are read outside the write transaction; the memory is read
    under a row lock and written in one transaction: nodes take turns.
    """
    with db.reading() as session:
        figures = gather(session, settings, utcnow())
        if dry_run:
            return plan(figures, settings, _memory(session, lock=False), utcnow())
    if figures:
        _ensure_rows(db, [f.type_id for f in figures])
    with db.transaction() as session:
        now = utcnow()
        plans = plan(figures, settings, _memory(session, lock=True), now)
        _record(session, plans, now)
    return plans
