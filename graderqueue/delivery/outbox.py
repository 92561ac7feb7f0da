"""The outbox in the database: claiming due deliveries, recording outcomes, backoff.

Every function that changes rows takes the caller's session, so the worker
records the posts that ended, gives back untried rows and claims new ones in
one transaction.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.delivery.post import Outcome
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Job,
    Platform,
    PlatformKey,
    Result,
    utcnow,
)


@dataclass(frozen=True)
class Due:
    """A claimed delivery with everything needed to post it."""

    id: int
    job_id: int
    platform_id: int
    attempts: int
    created_at: datetime
    url: str
    platform_name: str
    platform_key_pem: str | None
    job_name: str
    resultdata: str


def backoff_sec(attempts: int, settings: Settings, rand: float | None = None) -> float:
    """Delay before the next try after ``attempts`` failures.

    Doubles from ``delivery_backoff_base_sec`` up to ``delivery_backoff_max_sec``,
    with "equal jitter" (half fixed, half random), so that rows which failed
    together (a platform outage) do not all come back in the same second.
    """
    base = max(settings.delivery_backoff_base_sec, 0.001)
    ceiling = max(float(settings.delivery_backoff_max_sec), base)
    delay = min(ceiling, base * 2 ** min(max(attempts, 1) - 1, 40))
    return delay / 2 + (random.random() if rand is None else rand) * delay / 2


def due_rows(table: Any) -> Any:
    """The rows of an outbox ``table`` (deliveries, callbacks: the same columns)
    that are due: pending, due by the bound ``due_before``, and unclaimed or
    with their claim's lease over at the bound ``now``."""
    return and_(
        table.state == DeliveryState.PENDING,
        table.next_attempt_at <= bindparam("due_before"),
        or_(table.locked_until.is_(None), table.locked_until < bindparam("now")),
    )


_ANY_DUE = select(Delivery.id).where(due_rows(Delivery)).limit(1)


def any_due(db: Database, due_before: datetime | None = None) -> bool:
    """Whether an unclaimed row is due (by ``due_before``, default now); only reads."""
    now = utcnow()
    with db.reading() as session:
        found = session.scalar(_ANY_DUE, {"now": now, "due_before": due_before or now})
    return found is not None


def claim(
    session: Session,
    dialect: str,
    holder: str,
    lease_sec: float,
    limit: int,
    due_before: datetime | None = None,
) -> list[Due]:
    """Claim up to ``limit`` rows due by ``due_before`` (default now) for ``holder``.

    ``holder`` is unique per claim; the rows are its own until the lease of
    ``lease_sec`` ends, and only its :func:`record` of them counts.
    """
    ids = lock_due(session, Delivery, dialect, holder, lease_sec, limit, utcnow(), due_before)
    return _load_claimed(session, ids, holder) if ids else []


# (table, locking) -> the lookup and the update of lock_due, built once each.
_LOCK_STATEMENTS: dict[tuple[Any, bool], tuple[Any, Any]] = {}


def _lock_statements(table: Any, locking: bool) -> tuple[Any, Any]:
    found = _LOCK_STATEMENTS.get((table, locking))
    if found is None:
        due = due_rows(table)
        lookup = (
            select(table.id)
            .where(due)
            .order_by(table.next_attempt_at, table.id)
            .limit(bindparam("row_limit"))
        )
        if locking:
            # Two workers scanning at once take disjoint rows instead of waiting.
            lookup = lookup.with_for_update(skip_locked=True)
        take = (
            update(table)
            .where(table.id.in_(bindparam("ids", expanding=True)), due)
            .values(locked_by=bindparam("holder"), locked_until=bindparam("until"))
            .execution_options(synchronize_session=False)
        )
        found = _LOCK_STATEMENTS[(table, locking)] = (lookup, take)
    return found


def lock_due(
    session: Session,
    table: Any,
    dialect: str,
    holder: str,
    lease_sec: float,
    limit: int,
    now: datetime,
    due_before: datetime | None = None,
) -> list[int]:
    """Lock up to ``limit`` rows of an outbox ``table`` (deliveries, callbacks) due
    by ``due_before`` (default ``now``), oldest due first, for ``holder`` until the
    lease ends."""
    lookup, take = _lock_statements(table, dialect != "sqlite")
    due = {"now": now, "due_before": due_before or now}
    ids = list(session.scalars(lookup, {**due, "row_limit": limit}))
    if ids:
        until = utcnow() + timedelta(seconds=lease_sec)
        session.execute(take, {**due, "ids": ids, "holder": holder, "until": until})
    return ids


# What posting claimed rows needs, built once (every batch runs these).
_CLAIMED = (
    select(
        Delivery.id,
        Delivery.job_id,
        Delivery.platform_id,
        Delivery.attempts,
        Delivery.created_at,
        Platform.return_url,
        Platform.name,
        Job.name,
        Result.resultdata,
    )
    .join(Job, Job.id == Delivery.job_id)
    .join(Platform, Platform.id == Delivery.platform_id)
    .outerjoin(Result, Result.job_id == Delivery.job_id)
    .where(
        Delivery.id.in_(bindparam("ids", expanding=True)),
        Delivery.locked_by == bindparam("holder"),
    )
    .order_by(Delivery.next_attempt_at, Delivery.id)
)
_KEYS = (
    select(PlatformKey.platform_id, PlatformKey.public_key)
    .where(
        PlatformKey.platform_id.in_(bindparam("platform_ids", expanding=True)),
        PlatformKey.active.is_(True),
    )
    .order_by(PlatformKey.id.desc())
)


def _load_claimed(session: Session, ids: list[int], holder: str) -> list[Due]:
    """What posting the claimed rows needs: the platform, its newest key, the result."""
    rows = session.execute(_CLAIMED, {"ids": ids, "holder": holder}).all()
    keys = _newest_keys(session, {row.platform_id for row in rows})
    return [
        Due(
            id=row[0],
            job_id=row[1],
            platform_id=row[2],
            attempts=row[3],
            created_at=row[4],
            url=row[5],
            platform_name=row[6],
            platform_key_pem=keys.get(row[2]),
            job_name=row[7],
            resultdata=row[8] if row[8] is not None else "{}",
        )
        for row in rows
    ]


def _newest_keys(session: Session, platform_ids: set[int]) -> dict[int, str]:
    """Each platform's newest active key: during a rotation, the one it added last."""
    found: dict[int, str] = {}
    if not platform_ids:
        return found
    for platform_id, pem in session.execute(_KEYS, {"platform_ids": list(platform_ids)}):
        found.setdefault(platform_id, pem)
    return found


def release(session: Session, holder: str, ids: list[int]) -> None:
    """Give back claimed rows that were not tried (the worker is stopping)."""
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.locked_by == holder)
        .values(locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )


class Finished(NamedTuple):
    """A post that is over, waiting to be recorded under the claim it was made with."""

    due: Due
    holder: str
    outcome: Outcome


@dataclass(frozen=True)
class Recorded:
    state: str | None  # None: the claim was lost meanwhile, nothing was overwritten
    retry_at: datetime | None = None  # a failed row's next try
    brought_forward: bool = False  # this success made the platform's other rows due now


def record(session: Session, finished: Sequence[Finished], settings: Settings) -> list[Recorded]:
    """Store each attempt and its row's next state, in the order given.

    A row whose claim was lost meanwhile (an operator asked for a
    redelivery while the post was under way, or the lease ran out) belongs
    to someone else: its outcome overwrites nothing (``Recorded(None)``).
    """
    now = utcnow()
    recorded: list[Recorded] = [Recorded(None)] * len(finished)
    # Rows in id order: two workers recording at once on MariaDB lock them in
    # the same order, so they wait for each other instead of deadlocking.
    for index in sorted(range(len(finished)), key=lambda i: finished[i].due.id):
        recorded[index] = _record_one(session, finished[index], settings, now)
    lost = [f.due.id for f, r in zip(finished, recorded, strict=True) if r.state is None]
    _store_attempts(session, finished, lost, now)
    # The platform answers again: its rows waiting out a backoff go now
    # instead of up to delivery_backoff_max_sec later.
    forward = list(
        dict.fromkeys(
            f.due.platform_id for f, r in zip(finished, recorded, strict=True) if r.brought_forward
        )
    )
    if forward:
        # Not the rows just recorded: one that failed in this batch was tried
        # a moment ago, with the platform up; it waits out its own backoff.
        session.execute(
            update(Delivery)
            .where(
                Delivery.state == DeliveryState.PENDING,
                Delivery.next_attempt_at > now,
                Delivery.platform_id.in_(forward),
                Delivery.id.not_in([f.due.id for f in finished]),
            )
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
    return recorded


DELIVERIES = Delivery.__table__
_INSERT_ATTEMPT = insert(DeliveryAttempt.__table__)
# A successful post's row (a failed one's values come from _next_state), built once.
_DELIVERED = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.id == bindparam("row_id"),
        DELIVERIES.c.locked_by == bindparam("holder"),
        DELIVERIES.c.state == DeliveryState.PENDING,
    )
    .values(
        attempts=DELIVERIES.c.attempts + 1,
        last_attempt_at=bindparam("now"),
        locked_by=None,
        locked_until=None,
        state=DeliveryState.DELIVERED,
        delivered_at=bindparam("now"),
        last_error="",
    )
)


def _record_one(session: Session, done: Finished, settings: Settings, now: datetime) -> Recorded:
    """One row's new state, if its claim still holds, and the event it is worth."""
    due, holder, outcome = done
    if outcome.ok:  # nearly every row: the statement built once
        state, retry_at = DeliveryState.DELIVERED, None
        won = session.execute(_DELIVERED, {"row_id": due.id, "holder": holder, "now": now})
    else:
        state, values, retry_at = _next_state(due, outcome, settings, now)
        won = session.execute(
            update(DELIVERIES)
            .where(
                DELIVERIES.c.id == due.id,
                DELIVERIES.c.locked_by == holder,
                DELIVERIES.c.state == DeliveryState.PENDING,
            )
            .values(**values)
        )
    if won.rowcount != 1:
        return Recorded(None)
    if state == DeliveryState.GIVEN_UP:
        events.log_event(
            session,
            events.DELIVERY_GIVEN_UP,
            job_id=due.job_id,
            message=f"gave up after {due.attempts + 1} attempts: {outcome.error}",
        )
    elif not outcome.ok and due.attempts == 0:
        # One event when a result starts failing, not one per retry: the
        # attempts table has every try.
        events.log_event(session, events.DELIVERY_FAILED, job_id=due.job_id, message=outcome.error)
    # Only after a retry succeeds: a first-try success rarely follows an
    # outage, and this spares an UPDATE per delivery.
    return Recorded(state, retry_at, brought_forward=outcome.ok and due.attempts > 0)


def _store_attempts(
    session: Session, finished: Sequence[Finished], lost: list[int], now: datetime
) -> None:
    """Every post is an attempt; a lost row keeps its attempt (the post did
    happen) unless the job was deleted meanwhile, which took the row with it."""
    gone = set(lost)
    if lost:
        gone -= set(session.scalars(select(Delivery.id).where(Delivery.id.in_(lost))))
    attempts = [
        {
            "delivery_id": due.id,
            "time": now,
            "ok": outcome.ok,
            "http_status": outcome.http_status,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
        }
        for due, _holder, outcome in finished
        if due.id not in gone
    ]
    if attempts:
        session.execute(_INSERT_ATTEMPT, attempts)


def _next_state(
    due: Due, outcome: Outcome, settings: Settings, now: datetime
) -> tuple[str, dict[str, Any], datetime | None]:
    """A failed post's row: its new state, the values that say so, and its next try
    if it has one (a successful post's row is ``_DELIVERED``)."""
    values: dict[str, Any] = {
        "attempts": DELIVERIES.c.attempts + 1,
        "last_attempt_at": now,
        "locked_by": None,
        "locked_until": None,
    }
    if (now - due.created_at).total_seconds() >= settings.delivery_give_up_after_sec:
        values.update(state=DeliveryState.GIVEN_UP, last_error=outcome.error)
        return DeliveryState.GIVEN_UP, values, None
    retry_at = now + timedelta(seconds=backoff_sec(due.attempts + 1, settings))
    values.update(next_attempt_at=retry_at, last_error=outcome.error)
    return DeliveryState.PENDING, values, retry_at


def next_due_in(db: Database, max_wait: float) -> float:
    """Seconds until an unclaimed pending row is due, at most ``max_wait``; 0 if one is due."""
    now = utcnow()
    with db.reading() as session:
        soonest = session.scalar(
            select(func.min(Delivery.next_attempt_at)).where(
                Delivery.state == DeliveryState.PENDING,
                or_(Delivery.locked_until.is_(None), Delivery.locked_until < now),
            )
        )
    if soonest is None:
        return max_wait
    return min(max_wait, max(0.0, (soonest - now).total_seconds()))
