"""The hourly clean-up: old jobs and events, dead token-registered servers, expired rows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import (
    Artifact,
    Callback,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Event,
    Handout,
    Job,
    JobFile,
    JobOutput,
    JobStatus,
    JobType,
    Listener,
    LoginThrottle,
    Result,
    Run,
    RunFile,
    RunState,
    SeenTokenId,
    Server,
    utcnow,
)

log = logging.getLogger(__name__)

# Rows changed or deleted per transaction: short transactions keep SQLite's
# write lock and MariaDB's row locks from holding up the queue.
BATCH = 500


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
    """Delete done, error and cancelled jobs older than ``keep_days`` with their rows elsewhere.

    Never a queued or sent job, and never a done job whose result is still
    owed to its platform. Dependent rows are deleted explicitly, not left to
    ON DELETE CASCADE, so the purge does not depend on the engine enforcing it.
    """
    cutoff = utcnow() - timedelta(days=keep_days)
    owed = exists().where(Delivery.job_id == Job.id, Delivery.state == DeliveryState.PENDING)
    old = or_(
        and_(Job.status == JobStatus.DONE, Job.grading_end_time < cutoff),
        and_(Job.status == JobStatus.ERROR, Job.received_time < cutoff),
        # A cancel stamps grading_end_time: the moment the job ended.
        and_(Job.status == JobStatus.CANCELLED, Job.grading_end_time < cutoff),
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
            delete(Artifact).where(Artifact.job_id.in_(ids)),
            delete(Handout).where(Handout.job_id.in_(ids)),
            # Their files' bytes go later, with the next blob clean-up (files/cleanup.py).
            delete(JobFile).where(JobFile.job_id.in_(ids)),
            delete(JobOutput).where(JobOutput.job_id.in_(ids)),
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


ENDED_RUNS = (RunState.FINISHED, RunState.FAILED, RunState.CANCELLED)


def purge_old_runs(db: Database, keep_days: int) -> dict[str, int]:
    """Runs that ended more than ``keep_days`` ago, and callbacks that are over
    (delivered or given up) and as old. A run whose end is still owed to its
    callback URL stays; its jobs go with the job purge, by their own age."""
    cutoff = utcnow() - timedelta(days=keep_days)
    over = Callback.state.in_((DeliveryState.DELIVERED, DeliveryState.GIVEN_UP))

    def pick_callbacks(session: Session) -> list[int]:
        query = select(Callback.id).where(over, Callback.created_at < cutoff)
        return list(session.scalars(query.order_by(Callback.id).limit(BATCH)))

    def remove_callbacks(session: Session, ids: list[int]) -> None:
        session.execute(delete(Callback).where(Callback.id.in_(ids), over))

    owed = exists().where(Callback.run_id == Run.id, ~over)
    old_run = and_(Run.state.in_(ENDED_RUNS), Run.ended_at < cutoff, ~owed)

    def pick_runs(session: Session) -> list[int]:
        query = select(Run.id).where(old_run).order_by(Run.id).limit(BATCH)
        return list(session.scalars(query))

    def remove_runs(session: Session, ids: list[int]) -> None:
        # Their blobs go with the next clean-up if nothing else holds them.
        session.execute(delete(RunFile).where(RunFile.run_id.in_(ids)))
        session.execute(delete(Run).where(Run.id.in_(ids), old_run))

    return {
        "callbacks": _delete_in_batches(db, pick_callbacks, remove_callbacks),
        "runs": _delete_in_batches(db, pick_runs, remove_runs),
    }


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


def purge_expired(
    db: Database, listener_stale_sec: float, login_window_sec: float
) -> dict[str, int]:
    """Interface tokens and replay-guard token ids past their expiry, dead listeners,
    log-in counts whose window is over."""
    now = utcnow()
    stale = now - timedelta(seconds=listener_stale_sec * 5)
    with db.transaction() as session:
        return {
            "seen token ids": session.execute(
                delete(SeenTokenId).where(SeenTokenId.expires_at < now)
            ).rowcount,
            "stale listeners": session.execute(
                delete(Listener).where(Listener.heartbeat < stale)
            ).rowcount,
            "log-in counts": session.execute(
                delete(LoginThrottle).where(
                    LoginThrottle.window_start <= now - timedelta(seconds=login_window_sec)
                )
            ).rowcount,
        }
