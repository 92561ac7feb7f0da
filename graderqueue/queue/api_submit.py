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

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.delivery import callbacks
from graderqueue.errors import BadRequest, QueueError
from graderqueue.protocol import submissions
from graderqueue.protocol.numbers import json_int
from graderqueue.queue import enqueue, idempotency, job_view
from graderqueue.registry.view import PlatformInfo, RegistryView
from graderqueue.store.db import Database
from graderqueue.store.models import Job

FIELDS = frozenset(
    {"jobname", "jobdata", "tags", "priority", "jobusertaskid", "taskrevision", "timeout"}
    | {"callback_url"}
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
) -> tuple[list, list[str]]:
    """The submissions in a request body (an object, or a non-empty array of them),
    each parsed and routed, so a refusal names the job it is about; and each
    one's callback URL ("": none)."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise BadRequest("An empty batch: send at least one job.")
    if len(items) > settings.api_batch_max:
        raise BadRequest(f"At most {settings.api_batch_max} jobs per batch.")
    subs, urls = [], []
    for n, item in enumerate(items):
        where = f"job {n}: " if isinstance(body, list) else ""
        try:
            sub, url = parse_one(item, view, settings, platform)
        except BadRequest as exc:
            raise BadRequest(where + exc.message) from exc
        subs.append(sub)
        urls.append(url)
    return subs, urls


def parse_one(
    item: Any, view: RegistryView, settings: Settings, platform: PlatformInfo | None
) -> tuple[submissions.Submission, str]:
    """One job object, as ``POST /api/v1/jobs`` and a run's specs take it: the
    submission (parsed, routed) and its callback URL ("": none)."""
    if not isinstance(item, dict):
        raise BadRequest("a job is a JSON object.")
    _check_types(item)
    url = ""
    if "callback_url" in item:
        url = callbacks.check_for(item["callback_url"], platform)
    sub = submissions.parse(
        {k: v for k, v in item.items() if k != "callback_url"} | {"request": "sendjob"},
        settings,
        restrict_paths=platform.restrict_paths if platform else "",
    )
    enqueue.new_job(sub, view, settings, platform.force_tag_id if platform else None)
    return sub, url


def _check_types(item: dict[str, Any]) -> None:
    """The JSON API's types, stricter than the protocol's PHP-style reading: the
    OpenAPI document says exactly what is accepted, so nothing else is."""
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {', '.join(unknown)}.")
    if not isinstance(item.get("jobdata"), dict):
        raise BadRequest("jobdata is a JSON object.")
    for key in ("jobname", "jobusertaskid", "taskrevision"):
        if key in item and not isinstance(item[key], str):
            raise BadRequest(f"{key} is a string.")
    tags = item.get("tags", "")
    if not isinstance(tags, str) and not (
        isinstance(tags, list) and all(isinstance(t, str) for t in tags)
    ):
        raise BadRequest("tags is a string (names by commas) or a list of names.")
    for key, minimum in (("priority", 0), ("timeout", 1)):
        if key in item:
            value = json_int(item[key], minimum, submissions.INT_MAX)
            if value is None:
                raise BadRequest(f"{key} is an integer from {minimum} to {submissions.INT_MAX}.")
            item[key] = value


def callbacks_to(session: Session, job_ids: list[int], urls: list[str]) -> None:
    """Each job's callback URL, for the jobs sent with one (an UPDATE only for those)."""
    for job_id, url in zip(job_ids, urls, strict=True):
        if url:
            session.execute(update(Job).where(Job.id == job_id).values(callback_url=url))


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
    subs, urls = parse_body(body, view, settings, platform)
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
        callbacks_to(session, job_ids, urls)
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
