"""Sending results again on an operator's demand (CLI and admin pages)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, exists, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest, UnknownJob
from graderqueue.store import events
from graderqueue.store.models import (
    Delivery,
    DeliveryState,
    Job,
    JobStatus,
    Platform,
    Timestamp,
    utcnow,
)


def _reset_values(now: datetime) -> dict[str, Any]:
    # created_at restarts the give-up horizon: a redelivery of an old result
    # must get its retries, not give up at the first failure.
    return {
        "state": DeliveryState.PENDING,
        "next_attempt_at": now,
        "created_at": now,
        "delivered_at": None,
        "locked_by": None,
        "locked_until": None,
    }


def redeliver_job(session: Session, job_id: int) -> None:
    """Send a done job's result to its platform again, even if it was delivered."""
    job = session.get(Job, job_id)
    if job is None:
        raise UnknownJob(f"No job #{job_id}.")
    if job.status != JobStatus.DONE:
        raise BadRequest(f"Job #{job_id} is {job.status}, not done: it has no result to send.")
    platform = session.get(Platform, job.platform_id) if job.platform_id is not None else None
    if platform is None or not platform.return_url:
        raise BadRequest(f"Job #{job_id} comes from no platform with a return URL.")
    now = utcnow()
    changed = session.execute(
        update(Delivery)
        .where(Delivery.job_id == job_id)
        .values(**_reset_values(now))
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount == 0:
        session.add(
            Delivery(job_id=job_id, platform_id=platform.id, next_attempt_at=now, created_at=now)
        )
    events.log_event(session, events.REDELIVERY, job_id=job_id, message="redelivery requested")


def redeliver_matching(
    session: Session,
    platform: Platform,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Send again the results of a platform's jobs done in [since, until); returns how many."""
    if not platform.return_url:
        raise BadRequest(f"Platform {platform.name!r} has no return URL.")
    now = utcnow()
    conditions = [Job.platform_id == platform.id, Job.status == JobStatus.DONE]
    if since is not None:
        conditions.append(Job.grading_end_time >= since)
    if until is not None:
        conditions.append(Job.grading_end_time < until)
    matching = select(Job.id).where(*conditions)
    reset = session.execute(
        update(Delivery)
        .where(Delivery.job_id.in_(matching))
        .values(**_reset_values(now))
        .execution_options(synchronize_session=False)
    ).rowcount
    # Jobs done before the platform had a return URL, or before this version
    # of the queue, have no outbox row yet: make one.
    stamp = literal(now, Timestamp)
    created = session.execute(
        insert(Delivery).from_select(
            [
                "job_id",
                "platform_id",
                "state",
                "attempts",
                "next_attempt_at",
                "created_at",
                "last_error",
            ],
            select(
                Job.id,
                Job.platform_id,
                literal(DeliveryState.PENDING.value),
                literal(0),
                stamp,
                stamp,
                literal(""),
            ).where(*conditions, ~exists().where(Delivery.job_id == Job.id)),
        )
    ).rowcount
    total = reset + created
    events.log_event(
        session,
        events.REDELIVERY,
        message=f"redelivery of {total} results of platform {platform.name} requested "
        f"(done from {since or 'the start'} until {until or 'now'})",
    )
    return total


def retry_now(
    session: Session,
    *,
    job_id: int | None = None,
    platform_id: int | None = None,
    actor: str = "cli",
) -> int:
    """Owed results of one job or one platform: tried again at once, not at their backoff.

    Only results not delivered yet (pending, or given up: those get a fresh
    give-up horizon); a result being posted right now is left to its post.
    Returns how many will be tried; the caller kicks the delivery worker after
    the commit.
    """
    if (job_id is None) == (platform_id is None):
        raise ValueError("retry_now: a job or a platform")
    now = utcnow()
    if job_id is not None:
        target = Delivery.job_id == job_id
        what = f"job #{job_id}"
    else:
        target = Delivery.platform_id == platform_id
        what = f"the results owed to platform #{platform_id}"
    changed = session.execute(
        update(Delivery)
        .where(
            target,
            Delivery.state.in_([DeliveryState.PENDING, DeliveryState.GIVEN_UP]),
            or_(Delivery.locked_until.is_(None), Delivery.locked_until < now),
        )
        .values(
            state=DeliveryState.PENDING,
            next_attempt_at=now,
            created_at=case(
                (Delivery.state == DeliveryState.GIVEN_UP, literal(now, Timestamp)),
                else_=Delivery.created_at,
            ),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed:
        events.log_event(
            session,
            events.REDELIVERY,
            job_id=job_id,
            message=f"retry now of {what} ({changed}) by {actor}",
        )
    return changed
