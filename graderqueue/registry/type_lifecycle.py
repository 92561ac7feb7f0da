"""Changing and removing server types and tags (platforms: ``lifecycle``).

Same rules as :mod:`graderqueue.registry.lifecycle`: checked before written,
logged with who acted, and a removal that would strand jobs refused unless
told what to do with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import String, delete, func, literal, select
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest
from graderqueue.queue import control
from graderqueue.quoting import quote
from graderqueue.registry import actions
from graderqueue.registry.lifecycle import LIVE, UNFINISHED, log_change, names
from graderqueue.store import events
from graderqueue.store.models import (
    Job,
    JobType,
    Platform,
    Server,
    ServerToken,
    ServerType,
    TypeTag,
)

JT = JobType.__table__.c


# -- server types ----------------------------------------------------------------


def update_type(
    session: Session,
    name: str,
    *,
    tags: list[str] | None = None,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    actor: str,
) -> list[str]:
    """Set (``tags``), add or remove a type's tags; returns its tags now.

    Jobs already queued keep the types they were routed to; new jobs are
    routed by the new tags.
    """
    stype = actions.type_by_name(session, name)
    current = set(actions.type_tags(session, stype.id))
    wanted = set(tags) if tags is not None else set(current)
    missing = [t for t in remove if t not in wanted]
    if missing:
        raise BadRequest(f"Server type {quote(stype.name)} has no tag {names(missing)}.")
    wanted = (wanted | set(add)) - set(remove)
    by_name = {t: actions.tag_by_name(session, t).id for t in wanted | current}
    dropped, added = current - wanted, wanted - current
    if dropped:
        session.execute(
            delete(TypeTag).where(
                TypeTag.type_id == stype.id, TypeTag.tag_id.in_([by_name[t] for t in dropped])
            )
        )
    session.add_all(TypeTag(type_id=stype.id, tag_id=by_name[t]) for t in sorted(added))
    if dropped or added:
        session.flush()
        shown = ",".join(sorted(wanted)) or "none"
        was = ",".join(sorted(current)) or "none"
        log_change(
            session, events.TYPE_UPDATED, f"type {stype.name}: tags {shown} (was {was})", actor
        )
    return sorted(wanted)


@dataclass(frozen=True)
class TypeStranding:
    servers: list[str]
    tokens: list[str]
    jobs: list[int]  # unfinished jobs only this type can run


def type_stranding(session: Session, name: str) -> TypeStranding:
    stype = actions.type_by_name(session, name)
    other = JobType.__table__.alias("other")
    only_here = (
        select(JT.job_id)
        .where(JT.type_id == stype.id, JT.status.in_(UNFINISHED))
        .where(
            ~select(other.c.job_id)
            .where(other.c.job_id == JT.job_id, other.c.type_id != stype.id)
            .exists()
        )
    )
    return TypeStranding(
        servers=list(session.scalars(select(Server.name).where(Server.type_id == stype.id))),
        tokens=list(
            session.scalars(select(ServerToken.name).where(ServerToken.type_id == stype.id))
        ),
        jobs=list(session.scalars(only_here)),
    )


def remove_type(
    session: Session,
    name: str,
    *,
    cancel_jobs: bool = False,
    move_jobs_to: str | None = None,
    actor: str,
) -> list[int]:
    """Delete a server type; returns the types to wake (jobs moved to another).

    Refused while servers or server tokens have it, and while unfinished
    jobs can run only on it, unless they are cancelled (``cancel_jobs``) or
    moved to another type (``move_jobs_to``: every job routed to this type,
    finished ones too, is routed to that one instead).
    """
    stype = actions.type_by_name(session, name)
    if cancel_jobs and move_jobs_to:
        raise BadRequest("Either cancel the jobs or move them, not both.")
    target = actions.type_by_name(session, move_jobs_to) if move_jobs_to else None
    if target is not None and target.id == stype.id:
        raise BadRequest("Move the jobs to another type than the one removed.")
    stranding = type_stranding(session, stype.name)
    _refuse_used_type(stype.name, stranding)
    if stranding.jobs and not (cancel_jobs or target):
        raise BadRequest(
            f"{len(stranding.jobs)} unfinished job(s) (queued, held, being graded or in "
            f"error) can run only on server type {quote(stype.name)}: removing it would "
            "strand them. Cancel them (--cancel-jobs) or move them to another type "
            "(--move-jobs-to TYPE)."
        )
    if cancel_jobs and stranding.jobs:
        control.act_many(session, stranding.jobs, "cancel", actor=actor)
    if target is not None:
        _move_job_types(session, stype.id, target.id)
    session.execute(delete(JobType).where(JobType.type_id == stype.id))
    session.execute(delete(TypeTag).where(TypeTag.type_id == stype.id))
    session.execute(delete(ServerType).where(ServerType.id == stype.id))
    fate = f"moved to {target.name}" if target else "cancelled" if cancel_jobs else "none stranded"
    log_change(
        session,
        events.TYPE_REMOVED,
        f"type {stype.name} removed; its {len(stranding.jobs)} job(s) of its own: {fate}",
        actor,
    )
    return [target.id] if target is not None and stranding.jobs else []


def _refuse_used_type(name: str, stranding: TypeStranding) -> None:
    if stranding.servers or stranding.tokens:
        users = [f"server {quote(s)}" for s in stranding.servers]
        users += [f"server token {quote(t)}" for t in stranding.tokens]
        raise BadRequest(
            f"Server type {quote(name)} is still used by {', '.join(users)}: give the "
            "servers another type (server update NAME --type) or remove them, and revoke "
            "the tokens, first."
        )


def _move_job_types(session: Session, from_id: int, to_id: int) -> None:
    """Route every job of one type to another (a job routed to both keeps one row)."""
    both = list(
        session.scalars(
            select(JT.job_id).where(
                JT.type_id == to_id,
                JT.job_id.in_(select(JobType.job_id).where(JobType.type_id == from_id)),
            )
        )
    )
    for start in range(0, len(both), 500):
        session.execute(
            delete(JobType).where(
                JobType.type_id == from_id, JobType.job_id.in_(both[start : start + 500])
            )
        )
    session.execute(JobType.__table__.update().where(JT.type_id == from_id).values(type_id=to_id))


# -- tags ------------------------------------------------------------------------


@dataclass(frozen=True)
class TagStranding:
    forcing: list[str]  # platforms that force the tag
    jobs: list[int]  # live jobs carrying it


def tag_stranding(session: Session, name: str) -> TagStranding:
    tag = actions.tag_by_name(session, name)
    # Jobs keep their tags as "a,b,c": match ",tag," inside ",a,b,c,".
    wrapped = literal(",", String) + Job.tags + literal(",", String)
    carriers = select(Job.id).where(
        Job.status.in_(LIVE), wrapped.contains(f",{tag.name},", autoescape=True)
    )
    return TagStranding(
        forcing=list(session.scalars(select(Platform.name).where(Platform.force_tag_id == tag.id))),
        jobs=list(session.scalars(carriers)),
    )


def remove_tag(
    session: Session,
    name: str,
    *,
    default_tags: Sequence[str],
    cancel_jobs: bool = False,
    keep_jobs: bool = False,
    actor: str,
) -> int:
    """Delete a tag (and take it from every type); returns the jobs cancelled.

    Refused while a platform forces it or ``default_tags`` names it, and
    while live jobs carry it unless they are cancelled (``cancel_jobs``) or
    kept (``keep_jobs``: they run on the types they were routed to when
    queued, which do not change).
    """
    tag = actions.tag_by_name(session, name)
    if cancel_jobs and keep_jobs:
        raise BadRequest("Either cancel the jobs or keep them, not both.")
    stranding = tag_stranding(session, tag.name)
    if stranding.forcing:
        raise BadRequest(
            f"Platform(s) {names(stranding.forcing)} force tag {quote(tag.name)}: change "
            "that first (platform update NAME --no-force-tag)."
        )
    if tag.name in default_tags:
        raise BadRequest(
            f"Tag {quote(tag.name)} is in the default_tags setting, given to jobs sent "
            "without tags: take it out of the setting first."
        )
    if stranding.jobs and not (cancel_jobs or keep_jobs):
        raise BadRequest(
            f"{len(stranding.jobs)} live job(s) carry tag {quote(tag.name)}. Cancel them "
            "(--cancel-jobs), or keep them (--keep-jobs: they run on the server types "
            "chosen when they were queued)."
        )
    cancelled = 0
    if cancel_jobs and stranding.jobs:
        cancelled = len(control.act_many(session, stranding.jobs, "cancel", actor=actor).job_ids)
    types = session.scalar(select(func.count()).where(TypeTag.tag_id == tag.id))
    session.execute(delete(TypeTag).where(TypeTag.tag_id == tag.id))
    session.delete(tag)
    log_change(
        session,
        events.TAG_REMOVED,
        f"tag {tag.name} removed from {types} type(s); {len(stranding.jobs)} live job(s) "
        f"carried it, {cancelled} cancelled",
        actor,
    )
    return cancelled
