"""Changing and removing platforms (types and tags: ``type_lifecycle``; servers: ``fleet``).

Shared by the CLI and the admin pages. Each function checks everything it
can before it writes, runs inside the caller's transaction (a refusal rolls
back whatever was written) and logs one event naming who acted: ``actor``
is "cli" or "admin NAME". A removal that would strand jobs is refused unless
the caller says what to do with them; the ``*_stranding`` functions count
them beforehand, for a confirmation page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest
from graderqueue.queue import control
from graderqueue.quoting import quote
from graderqueue.registry import actions
from graderqueue.store import events
from graderqueue.store.models import (
    Artifact,
    Delivery,
    DeliveryAttempt,
    FairShare,
    Handout,
    IdempotencyKey,
    Job,
    JobStatus,
    JobType,
    Platform,
    PlatformKey,
    Result,
    SeenTokenId,
)

# Jobs that are not over: a removal must not leave them without a way to run.
LIVE = (JobStatus.QUEUED, JobStatus.HELD, JobStatus.SENT)
# A server type's jobs in error can still be requeued: they need a type too.
UNFINISHED = (*LIVE, JobStatus.ERROR)
WEIGHT_MAX = 1000  # fair share's step is 10^6 / weight: plenty of resolution left
MAX_QUEUED_MAX = 10**9


def names(values: list[str]) -> str:
    """Names for a message: `a`, `b`."""
    return ", ".join(quote(v) for v in values)


def log_change(session: Session, kind: str, message: str, actor: str) -> None:
    """One event saying what changed and who did it."""
    events.log_event(session, kind, message=f"{message}; by {actor}")


# -- platforms -------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformChanges:
    """What ``platform update`` changes; None (or empty) leaves a field as it is."""

    return_url: str | None = None  # "": no delivery
    restrict_paths: str | None = None  # "": any path
    force_tag: str | None = None  # "": none
    require_fresh: bool | None = None
    lenient_integers: bool | None = None
    weight: int | None = None
    max_queued: int | None = None
    no_max_queued: bool = False
    callback_hosts: str | None = None  # "": only the return URL's host
    add_keys: tuple[str, ...] = ()  # PEM texts
    remove_keys: tuple[str, ...] = ()  # fingerprint prefixes

    def is_empty(self) -> bool:
        # By identity with each field's default: a weight of 0 is a change
        # (refused later), and so is --no-require-fresh's False.
        values = [(getattr(self, f.name), f.default) for f in fields(self)]
        return all(value is default or value == () for value, default in values)


def check_return_url(url: str) -> str:
    url = url.strip()
    if url and not url.startswith(("http://", "https://")):
        raise BadRequest("The return URL must start with http:// or https://.")
    return url


def check_callback_hosts(text: str) -> str:
    """Host names or addresses by commas, lower case: what callback URLs may name."""
    hosts = [h.strip().lower() for h in text.split(",") if h.strip()]
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9.:-]{1,253}", host):
            raise BadRequest(f"Invalid callback host {quote(host)}: a host name or an address.")
    return ",".join(dict.fromkeys(hosts))


def _bounded(value: int, what: str, top: int) -> int:
    if not 1 <= value <= top:
        raise BadRequest(f"The {what} must be between 1 and {top}.")
    return value


def _field_changes(session: Session, platform: Platform, changes: PlatformChanges) -> list[str]:
    """Apply the plain fields; what changed, in words."""
    said: list[str] = []
    wanted: dict[str, object] = {}
    if changes.return_url is not None:
        wanted["return_url"] = check_return_url(changes.return_url)
    if changes.restrict_paths is not None:
        wanted["restrict_paths"] = changes.restrict_paths.strip()
    if changes.force_tag is not None:
        tag = changes.force_tag.strip()
        wanted["force_tag_id"] = actions.tag_by_name(session, tag).id if tag else None
    if changes.require_fresh is not None:
        wanted["require_fresh"] = changes.require_fresh
    if changes.lenient_integers is not None:
        wanted["lenient_integers"] = changes.lenient_integers
    if changes.weight is not None:
        wanted["weight"] = _bounded(changes.weight, "weight", WEIGHT_MAX)
    if changes.max_queued is not None and changes.no_max_queued:
        raise BadRequest("Give a cap on queued jobs or remove it, not both.")
    if changes.max_queued is not None:
        wanted["max_queued"] = _bounded(changes.max_queued, "cap on queued jobs", MAX_QUEUED_MAX)
    if changes.no_max_queued:
        wanted["max_queued"] = None
    if changes.callback_hosts is not None:
        wanted["callback_hosts"] = check_callback_hosts(changes.callback_hosts)
    for name, value in wanted.items():
        old = getattr(platform, name)
        if old != value:
            setattr(platform, name, value)
            said.append(f"{name} {_shown(value)} (was {_shown(old)})")
    return said


def _shown(value: object) -> str:
    return "none" if value in (None, "") else quote(value)


def update_platform(
    session: Session, name: str, changes: PlatformChanges, *, actor: str
) -> list[str]:
    """Change a platform; returns what changed (nothing: the values were already so).

    Keys are added before any is removed, so one call can replace a key.
    """
    platform = actions.platform_by_name(session, name)
    said = _field_changes(session, platform, changes)
    for pem in changes.add_keys:
        key = actions.add_platform_key(session, platform.name, pem)
        said.append(f"key {key.fingerprint[:16]} accepted")
    for prefix in changes.remove_keys:
        key = actions.remove_platform_key(session, platform.name, prefix)
        said.append(f"key {key.fingerprint[:16]} no longer accepted")
    if said:
        session.flush()
        log_change(
            session, events.PLATFORM_UPDATED, f"platform {platform.name}: {'; '.join(said)}", actor
        )
    return said


def set_platform_disabled(session: Session, name: str, *, disabled: bool, actor: str) -> bool:
    """Disable or enable a platform; False if it already was so (nothing logged)."""
    platform = actions.platform_by_name(session, name)
    if bool(platform.disabled) == disabled:
        return False
    platform.disabled = disabled
    kind = events.PLATFORM_DISABLED if disabled else events.PLATFORM_ENABLED
    log_change(
        session, kind, f"platform {platform.name} {'disabled' if disabled else 'enabled'}", actor
    )
    return True


def _live_jobs(session: Session, platform_id: int) -> list[int]:
    return list(
        session.scalars(select(Job.id).where(Job.platform_id == platform_id, Job.status.in_(LIVE)))
    )


def platform_stranding(session: Session, name: str) -> int:
    """Live jobs (queued, held, being graded) a removal of the platform would strand."""
    return len(_live_jobs(session, actions.platform_by_name(session, name).id))


def remove_platform(session: Session, name: str, *, cancel_jobs: bool, actor: str) -> int:
    """Delete a platform with its keys and every job it sent; returns the jobs cancelled.

    Refused while it has live jobs, unless ``cancel_jobs``. Its finished
    jobs, their results and deliveries still owed go too (the event log
    keeps their events).
    """
    platform = actions.platform_by_name(session, name)
    live = _live_jobs(session, platform.id)
    if live and not cancel_jobs:
        raise BadRequest(
            f"Platform {quote(platform.name)} has {len(live)} live job(s) (queued, held or "
            "being graded): removing it would strand them. Cancel them with the removal "
            "(--cancel-jobs), or disable the platform and remove it once they are done."
        )
    if live:
        control.act_many(session, live, "cancel", actor=actor)
    deleted = delete_platform_rows(session, platform.id)
    log_change(
        session,
        events.PLATFORM_REMOVED,
        f"platform {platform.name} removed with its {deleted} job(s), "
        f"{len(live)} of them cancelled",
        actor,
    )
    return len(live)


def delete_platform_rows(session: Session, platform_id: int) -> int:
    """Delete a platform and every row that names it; returns its jobs deleted.

    Dependent rows are deleted explicitly, as the hourly purge does, not
    left to ON DELETE CASCADE.
    """
    jobs = select(Job.id).where(Job.platform_id == platform_id)
    count = len(session.scalars(jobs).all())
    deliveries = select(Delivery.id).where(Delivery.platform_id == platform_id)
    for statement in (
        delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(deliveries)),
        delete(Delivery).where(Delivery.platform_id == platform_id),
        *(delete(m).where(m.job_id.in_(jobs)) for m in (Result, Artifact, Handout, JobType)),
        delete(Job).where(Job.platform_id == platform_id),
        delete(PlatformKey).where(PlatformKey.platform_id == platform_id),
        delete(SeenTokenId).where(SeenTokenId.platform_id == platform_id),
        delete(FairShare).where(FairShare.sender == platform_id),
        delete(IdempotencyKey).where(IdempotencyKey.caller == f"platform:{platform_id}"),
        delete(Platform).where(Platform.id == platform_id),
    ):
        session.execute(statement.execution_options(synchronize_session=False))
    return count
