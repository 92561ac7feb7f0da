"""``GET /api/v1/servers``: the grading servers as a worker list shows them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.admin import server_states
from graderqueue.config import Settings
from graderqueue.queue.job_view import iso
from graderqueue.registry import operations
from graderqueue.registry.view import RegistryView
from graderqueue.store.models import Job, JobStatus, ServerType, utcnow


def usable_type_names(session: Session, view: RegistryView, force_tag_id: int | None) -> set[str]:
    """The server types a platform's jobs can run on: all, or those of its forced tag."""
    if force_tag_id is None:
        return set(session.scalars(select(ServerType.name)))
    ids = view.types_handling([force_tag_id])
    return set(session.scalars(select(ServerType.name).where(ServerType.id.in_(ids))))


def workers(session: Session, settings: Settings, types: set[str] | None) -> list[dict[str, Any]]:
    """Each server: alive (polled lately, or grading with no failed wake-up), lost, busy, counts.

    ``types``: only servers of these types (a platform's view); None: all.
    """
    now = utcnow()
    recent = now - timedelta(seconds=max(settings.wakeup_recent_sec, settings.poll_wait_sec + 5))
    done = dict(
        session.execute(
            select(Job.sent_to, func.count())
            .where(Job.status == JobStatus.DONE, Job.sent_to.is_not(None))
            .group_by(Job.sent_to)
        ).all()
    )
    drained = set(operations.stopped(session).drained_servers)
    listed = []
    for s in server_states.servers(session, settings, now):
        if types is not None and s.type_name not in types:
            continue
        polled = s.last_poll is not None and s.last_poll >= recent
        lost = s.state == server_states.LOST  # the admin pages' rule (docs/ADMIN.md)
        listed.append(
            {
                "name": s.name,
                "type": s.type_name,
                "alive": not lost and (polled or (s.held > 0 and s.wakeup_fails == 0)),
                "lost": lost,
                "busy": s.held > 0,
                "drained": s.name in drained,
                "jobs_held": s.held,
                "max_jobs": s.max_jobs,
                "jobs_done": done.get(s.id, 0),
                "last_poll": iso(s.last_poll),
            }
        )
    return listed
