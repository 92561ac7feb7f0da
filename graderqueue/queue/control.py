"""Acting on jobs: cancel, hold, release, requeue, one job or many.

Used by the JSON API (by id and by filter) and the admin pages. Each action
is allowed from the statuses in :data:`ALLOWED_FROM`; a job in any other
status is refused (:class:`~graderqueue.errors.Conflict`) when named by id,
and skipped when picked by a filter. Every job acted on gets an event, which
its timeline shows.

- ``cancel``: over for good. The row stays (the JSON API shows it
  ``CANCELLED``) but leaves the dedup key, so the same ``jobusertaskid`` sent
  again is a new job, as after the original's delete; ``getjob`` answers
  "Invalid jobid.". A server still grading it learns so from ``/jobstate``
  and its result is refused.
- ``hold``: a queued job waits, never handed out, until ``release``.
- ``requeue``: back in the queue, failures forgotten, from any status. A
  done job is graded again (a rejudge): its result, delivery and artifacts
  go, and the new result is delivered as the first was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest, Conflict, UnknownJob
from graderqueue.queue import fair_share, listing, runs_progress, states
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import (
    Artifact,
    Delivery,
    DeliveryAttempt,
    Job,
    JobStatus,
    Result,
    utcnow,
)

JOBS = Job.__table__
S = JobStatus
ALLOWED_FROM: dict[str, frozenset[str]] = {
    "cancel": frozenset({S.QUEUED, S.HELD, S.SENT, S.ERROR}),
    "hold": frozenset({S.QUEUED}),
    "release": frozenset({S.HELD}),
    "requeue": frozenset({S.QUEUED, S.HELD, S.SENT, S.ERROR, S.DONE, S.CANCELLED}),
}
ACTIONS = tuple(ALLOWED_FROM)
# Jobs changed per transaction by act_by_filter.
BATCH = 500
_EVENT = {
    "cancel": events.CANCELLED,
    "hold": events.HELD,
    "release": events.RELEASED_HOLD,
    "requeue": events.REQUEUED,
}
_DONE = {"cancel": "cancelled", "hold": "held", "release": "released", "requeue": "requeued"}
_TARGET = {"cancel": S.CANCELLED, "hold": S.HELD, "release": S.QUEUED, "requeue": S.QUEUED}


@dataclass
class Acted:
    """What an action did: the jobs it changed, and what to do after commit."""

    job_ids: list[int] = field(default_factory=list)
    # Server types with jobs newly queued: wake their servers.
    type_ids: set[int] = field(default_factory=set)
    # Servers that were grading a job now cancelled or requeued.
    holders: set[int] = field(default_factory=set)
    # What cancelled run jobs left to do after commit (a post job to wake for).
    runs: runs_progress.Progress = field(default_factory=runs_progress.Progress)


def check_action(action: str) -> None:
    if action not in ALLOWED_FROM:
        raise BadRequest(f"Unknown action {action!r}: one of {', '.join(ACTIONS)}.")


def act(
    session: Session,
    job_id: int,
    action: str,
    *,
    actor: str,
    priority: int | None = None,
    platform_id: int | None = None,
) -> Acted:
    """One job, named by id: refused if its status does not allow ``action``.

    ``platform_id``: the job must be that platform's (else, unknown).
    """
    check_action(action)
    row = session.execute(
        select(JOBS.c.status, JOBS.c.platform_id).where(JOBS.c.id == job_id).with_for_update()
    ).first()
    if row is None or (platform_id is not None and row.platform_id != platform_id):
        raise UnknownJob(f"No job #{job_id}.")
    if row.status not in ALLOWED_FROM[action]:
        raise Conflict(f"Job #{job_id} is {row.status}: it cannot {action}.")
    return act_many(session, [job_id], action, actor=actor, priority=priority)


def act_many(
    session: Session,
    job_ids: Iterable[int],
    action: str,
    *,
    actor: str,
    priority: int | None = None,
) -> Acted:
    """Apply ``action`` to those of ``job_ids`` whose status allows it; others are left.

    ``priority`` (None: unchanged) is ignored by ``cancel``: a cancelled job is
    never handed out, so it has no order to change.
    """
    check_action(action)
    if action == "cancel":
        priority = None
    rows = session.execute(
        select(JOBS.c.id, JOBS.c.status, JOBS.c.sent_to, JOBS.c.jobusertaskid, JOBS.c.platform_id)
        .where(JOBS.c.id.in_(list(job_ids)), JOBS.c.status.in_(ALLOWED_FROM[action]))
        .with_for_update()
    ).all()
    acted = Acted()
    if not rows:
        return acted
    ids = [r.id for r in rows]
    acted.job_ids = ids
    acted.holders = {r.sent_to for r in rows if r.status == S.SENT and r.sent_to is not None}
    if action == "requeue":
        _forget_outcomes(session, [r.id for r in rows if r.status == S.DONE])
        _restore_dedup_keys(session, [r for r in rows if r.status in (S.DONE, S.CANCELLED)])
    values = _new_values(action, priority)
    session.execute(
        update(JOBS)
        .where(JOBS.c.id.in_(ids))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    states.sync_types(session, ids, _TARGET[action])
    if priority is not None:
        states.sync_priority(session, ids, priority)
    if _TARGET[action] == S.QUEUED:
        acted.type_ids = set(
            session.scalars(
                select(states.JOB_TYPES.c.type_id)
                .where(states.JOB_TYPES.c.job_id.in_(ids))
                .distinct()
            )
        )
    if action == "requeue":
        _new_places(session, rows)
    _log(session, rows, action, actor, priority)
    if action == "cancel":
        # A run job's end moves its run on (queue/runs_progress.py), here as anywhere.
        acted.runs = runs_progress.on_job_ended(session, ids)
    return acted


def _new_places(session: Session, rows: list[Any]) -> None:
    """A requeued job takes a new place in line, as a job queued now (fair share):
    a rejudge of a whole task goes behind the others' waiting jobs, not ahead."""
    for row in rows:
        type_priority = session.execute(
            select(states.JOB_TYPES.c.type_id, states.JOB_TYPES.c.priority).where(
                states.JOB_TYPES.c.job_id == row.id
            )
        ).all()
        if type_priority:
            type_ids = [t for t, _p in type_priority]
            vstart = fair_share.place(session, row.platform_id, type_ids, type_priority[0][1])
            states.set_place(session, row.id, vstart)


def _new_values(action: str, priority: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {"status": _TARGET[action]}

    if action == "cancel":
        values.update(dedup_key=None, lease_expires=None, grading_end_time=utcnow())
    if action == "requeue":
        values.update(
            sent_to=None,
            lease_expires=None,
            nb_fails=0,
            grading_start_time=None,
            grading_end_time=None,
        )
    if priority is not None:
        values["priority"] = priority
    return values


def _forget_outcomes(session: Session, done_ids: list[int]) -> None:
    """A rejudged job owes nothing and shows nothing of its previous grading."""
    if not done_ids:
        return
    deliveries = select(Delivery.id).where(Delivery.job_id.in_(done_ids))
    session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(deliveries)))
    for model in (Delivery, Result, Artifact):
        session.execute(
            delete(model)
            .where(model.job_id.in_(done_ids))
            .execution_options(synchronize_session=False)
        )


def _restore_dedup_keys(session: Session, rows: list[Any]) -> None:
    """A job back in the queue takes its ``jobusertaskid`` as dedup key again,
    unless a newer live job of the same platform holds it (that one keeps it)."""
    for row in rows:
        taken = session.scalar(
            select(JOBS.c.id).where(
                JOBS.c.platform_id == row.platform_id
                if row.platform_id is not None
                else JOBS.c.platform_id.is_(None),
                JOBS.c.dedup_key == row.jobusertaskid,
            )
        )
        if taken is None:
            session.execute(
                update(JOBS).where(JOBS.c.id == row.id).values(dedup_key=row.jobusertaskid)
            )


def _log(session: Session, rows: list[Any], action: str, actor: str, priority: int | None) -> None:
    extra = f", priority now {priority}" if priority is not None else ""
    events.log_many(
        session,
        _EVENT[action],
        [
            {
                "job_id": r.id,
                "server_id": r.sent_to if r.status == S.SENT else None,
                "message": f"{_DONE[action]} by {actor or '?'} (was {r.status}){extra}",
            }
            for r in rows
        ],
    )


@dataclass
class ByFilter:
    matched: int
    changed: int = 0
    type_ids: set[int] = field(default_factory=set)


def act_by_filter(
    db: Database,
    jobs: listing.Matcher,
    action: str,
    *,
    actor: str,
    priority: int | None,
    dry_run: bool,
    limit: int,
    spend: Callable[[Session], None],
) -> ByFilter:
    """``action`` on every job ``jobs`` matches whose status allows it.

    A dry run only counts them. More than ``limit`` is refused before
    anything changes (narrow the filter). Jobs change in batches, one
    transaction each: a job that changed status meanwhile is left alone.
    """
    check_action(action)
    allowed = ALLOWED_FROM[action]
    with db.transaction() as session:
        spend(session)
        matched = listing.count(session, jobs, allowed)
        if dry_run:
            return ByFilter(matched)
        if matched > limit:
            raise BadRequest(f"The filter matches {matched} jobs, over {limit}: narrow it.")
        ids = list(listing.matching_ids(session, jobs, allowed))
    outcome = ByFilter(matched)
    for start in range(0, len(ids), BATCH):
        with db.transaction() as session:
            acted = act_many(
                session, ids[start : start + BATCH], action, actor=actor, priority=priority
            )
        outcome.changed += len(acted.job_ids)
        outcome.type_ids |= acted.type_ids | acted.runs.type_ids
    return outcome
