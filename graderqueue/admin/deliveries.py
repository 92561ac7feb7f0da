"""Deliveries as the admin sees them: per platform, a platform's backlog, per done job.

Every query reads the outbox through its indexes: undelivered rows along
``ix_deliveries_due`` (state first: there are few of them however many
results were delivered), a platform's newest rows along
``ix_deliveries_platform``. Nothing counts the delivered rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.admin.conditions import noindex
from graderqueue.store.models import Delivery, DeliveryState, Job, Platform

UNDELIVERED = (DeliveryState.PENDING, DeliveryState.GIVEN_UP)
# Rows a platform's backlog page lists, oldest first.
BACKLOG_LIMIT = 200


@dataclass(frozen=True)
class PlatformDeliveries:
    id: int
    name: str
    return_url: str
    pending: int = 0
    given_up: int = 0
    oldest_pending: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    last_success: datetime | None = None

    @property
    def failing(self) -> bool:
        """Results are owed and the latest try of one of them failed."""
        return bool((self.pending or self.given_up) and self.last_error)


def by_platform(session: Session) -> list[PlatformDeliveries]:
    """Every platform with a return URL or with results still owed, by name."""
    owed = {
        (pid, state): (n, oldest)
        for pid, state, n, oldest in session.execute(
            select(
                Delivery.platform_id, Delivery.state, func.count(), func.min(Delivery.created_at)
            )
            .where(Delivery.state.in_(UNDELIVERED))
            .group_by(Delivery.platform_id, Delivery.state)
        )
    }
    rows = []
    for platform in session.execute(
        select(Platform.id, Platform.name, Platform.return_url).order_by(Platform.name)
    ):
        pending, oldest = owed.get((platform.id, DeliveryState.PENDING), (0, None))
        given_up, _ = owed.get((platform.id, DeliveryState.GIVEN_UP), (0, None))
        if not platform.return_url and not pending and not given_up:
            continue
        error, error_at = _last_error(session, platform.id) if pending or given_up else ("", None)
        rows.append(
            PlatformDeliveries(
                id=platform.id,
                name=platform.name,
                return_url=platform.return_url,
                pending=pending,
                given_up=given_up,
                oldest_pending=oldest,
                last_error=error,
                last_error_at=error_at,
                last_success=_last_success(session, platform.id),
            )
        )
    return rows


def _last_error(session: Session, platform_id: int) -> tuple[str, datetime | None]:
    """The error of the latest failed try among the platform's undelivered results."""
    row = session.execute(
        select(Delivery.last_error, Delivery.last_attempt_at)
        .where(
            Delivery.state.in_(UNDELIVERED),
            # Along the state index (few undelivered rows), not the platform's
            # (every row it was ever owed).
            noindex(Delivery.platform_id) == platform_id,
            Delivery.last_attempt_at.is_not(None),
        )
        .order_by(Delivery.last_attempt_at.desc())
        .limit(1)
    ).first()
    return (row.last_error, row.last_attempt_at) if row is not None else ("", None)


def _last_success(session: Session, platform_id: int) -> datetime | None:
    """When the platform last took a result: that of its newest delivered row.

    Read along (platform, created_at) from the newest row: it passes only the
    platform's undelivered rows before finding a delivered one. The state is
    kept off its index: "delivered" is nearly every row, and a planner that
    took the state index read them all and sorted them (2.5 s at a million).
    """
    return session.scalar(
        select(Delivery.delivered_at)
        .where(
            Delivery.platform_id == platform_id,
            noindex(Delivery.state) == DeliveryState.DELIVERED,
        )
        .order_by(Delivery.created_at.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class Owed:
    """One undelivered result of a platform's backlog."""

    job_id: int
    job_name: str
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_error: str


def backlog(session: Session, platform_id: int, limit: int = BACKLOG_LIMIT) -> list[Owed]:
    """The platform's undelivered results, oldest first (at most ``limit``)."""
    rows = session.execute(
        select(
            Delivery.job_id,
            Job.name,
            Delivery.state,
            Delivery.attempts,
            Delivery.created_at,
            Delivery.next_attempt_at,
            Delivery.last_attempt_at,
            Delivery.last_error,
        )
        .join(Job, Job.id == Delivery.job_id)
        .where(Delivery.state.in_(UNDELIVERED), noindex(Delivery.platform_id) == platform_id)
        .order_by(Delivery.created_at, Delivery.id)
        .limit(limit)
    )
    return [Owed(*row) for row in rows]


@dataclass(frozen=True)
class DeliveryBadge:
    """What the done list says of a job's delivery: delivered, pending (n tries), failed."""

    state: str
    attempts: int

    @property
    def label(self) -> str:
        if self.state == DeliveryState.DELIVERED:
            return "delivered"
        if self.state == DeliveryState.GIVEN_UP:
            return "failed"
        return f"pending ({self.attempts})" if self.attempts else "pending"


def badges(session: Session, job_ids: list[int]) -> dict[int, DeliveryBadge]:
    """The delivery of each of these jobs; a job missing from the answer owes none."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Delivery.job_id, Delivery.state, Delivery.attempts).where(
            Delivery.job_id.in_(job_ids)
        )
    )
    return {job_id: DeliveryBadge(state, attempts) for job_id, state, attempts in rows}
