"""``POST /api/v1/jobs``: one job or a batch, with sendjob's fields and rules.

Each job object goes through the same parser as an encrypted ``sendjob``
(:func:`graderqueue.protocol.submissions.parse`): routing, clamping, path
restrictions and dedup are those of the protocol, in one place. A batch is
queued in one transaction: all its jobs, or none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.errors import BadRequest, QueueError
from graderqueue.protocol import submissions
from graderqueue.queue import enqueue, idempotency, job_view
from graderqueue.registry.view import PlatformInfo, RegistryView
from graderqueue.store.db import Database
from graderqueue.store.models import Job

FIELDS = frozenset(
    {"jobname", "jobdata", "tags", "priority", "jobusertaskid", "taskrevision", "timeout"}
)


@dataclass(frozen=True)
class Submitted:
    answer: dict[str, Any]
    type_ids: list[int]
    replayed: bool = False


class _Replayed(QueueError):
    """The Idempotency-Key was seen: its first answer is given again."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer


def parse_body(
    body: Any, view: RegistryView, settings: Settings, platform: PlatformInfo | None
) -> list:
    """The submissions in a request body (an object, or a non-empty array of them),
    each parsed and routed, so a refusal names the job it is about."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise BadRequest("An empty batch: send at least one job.")
    if len(items) > settings.api_batch_max:
        raise BadRequest(f"At most {settings.api_batch_max} jobs per batch.")
    subs = []
    for n, item in enumerate(items):
        where = f"job {n}: " if isinstance(body, list) else ""
        if not isinstance(item, dict):
            raise BadRequest(f"{where}a job is a JSON object.")
        unknown = sorted(set(item) - FIELDS)
        if unknown:
            raise BadRequest(f"{where}unknown field {', '.join(unknown)}.")
        try:
            sub = submissions.parse(
                {**item, "request": "sendjob"},
                settings,
                restrict_paths=platform.restrict_paths if platform else "",
            )
            enqueue.new_job(sub, view, settings, platform.force_tag_id if platform else None)
            subs.append(sub)
        except BadRequest as exc:
            raise BadRequest(where + exc.message) from exc
    return subs


def submit(
    db: Database,
    view: RegistryView,
    settings: Settings,
    body: Any,
    *,
    platform: PlatformInfo | None,
    received_via: str,
    idempotency_key: tuple[str, str, str] | None,
    spend: Callable[[Session], None],
) -> Submitted:
    """Queue the body's jobs; ``idempotency_key`` is (caller, key, request hash)."""
    subs = parse_body(body, view, settings, platform)
    batch = isinstance(body, list)
    with db.transaction() as session:
        spend(session)  # a platform token's jti: spent even if the key replays
    answer: dict[str, Any] = {}

    def before(session: Session) -> None:
        if idempotency_key is not None:
            prior = idempotency.replay(session, *idempotency_key)
            if prior is not None:
                raise _Replayed(prior)

    def after(session: Session, job_ids: list[int]) -> None:
        answer.clear()
        if batch:
            answer["ids"] = job_ids
        else:
            status = session.scalar(select(Job.status).where(Job.id == job_ids[0]))
            answer.update(id=job_ids[0], state=job_view.STATE_OF[status])
        if idempotency_key is not None:
            idempotency.remember(session, *idempotency_key, answer)

    try:
        queued = enqueue.submit(
            db,
            view,
            settings,
            subs,
            platform_id=platform.id if platform else None,
            received_via=received_via,
            forced_tag_id=platform.force_tag_id if platform else None,
            before=before,
            after=after,
        )
    except _Replayed as replayed:
        return Submitted(replayed.answer, [], replayed=True)
    return Submitted(dict(answer), queued.type_ids)
