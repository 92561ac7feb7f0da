"""Per server type: who can take its jobs now, and how long they have waited.

Read from the servers' states (admin/server_states.py, where "lost" is
defined) and the live jobs' ``job_types`` rows: nothing here reads the done
jobs, so it costs the same at any size of the jobs table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.admin.live_queue import TypeCount, counts_by_type
from graderqueue.admin.server_states import ServerView
from graderqueue.store.models import Job, JobStatus, JobType, ServerType


@dataclass(frozen=True)
class TypeOverview:
    id: int
    name: str
    paused: bool
    servers: int  # registered, whatever their state
    live: int  # expected to take work (server_states.ServerView.live)
    free_slots: int | None  # None: a live server without a limit
    queued: int
    sent: int
    error: int
    oldest_queued: datetime | None  # receipt of the longest-waiting queued job

    @property
    def no_server(self) -> bool:
        return self.servers == 0

    @property
    def no_live_server(self) -> bool:
        """Its jobs wait for nothing that will come (servers lost, unreachable or drained)."""
        return self.live == 0


def oldest_queued(session: Session, type_ids: list[int]) -> dict[int, datetime]:
    """Receipt time of the oldest queued job per type (the claim index finds them)."""
    if not type_ids:
        return {}
    rows = session.execute(
        select(JobType.type_id, func.min(Job.received_time))
        .join(Job, Job.id == JobType.job_id)
        .where(JobType.type_id.in_(type_ids), JobType.status == JobStatus.QUEUED)
        .group_by(JobType.type_id)
    ).all()
    return {type_id: when for type_id, when in rows if when is not None}


def type_overview(session: Session, servers: list[ServerView]) -> list[TypeOverview]:
    """Every server type by name, with its servers' capacity and its waiting jobs."""
    counts: dict[int, TypeCount] = {c.type_id: c for c in counts_by_type(session)}
    types = session.execute(
        select(ServerType.id, ServerType.name, ServerType.paused).order_by(ServerType.name)
    ).all()
    oldest = oldest_queued(session, [t.id for t in types])
    overview = []
    for t in types:
        mine = [s for s in servers if s.type_name == t.name]
        live = [s for s in mine if s.live]
        unlimited = any(s.max_jobs == 0 for s in live)
        count = counts.get(t.id, TypeCount(t.id, t.name))
        overview.append(
            TypeOverview(
                id=t.id,
                name=t.name,
                paused=bool(t.paused),
                servers=len(mine),
                live=len(live),
                free_slots=None if unlimited else sum(s.free_slots for s in live),
                queued=count.queued,
                sent=count.sent,
                error=count.error,
                oldest_queued=oldest.get(t.id),
            )
        )
    return overview
