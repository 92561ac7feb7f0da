"""``Idempotency-Key`` of ``POST /api/v1/jobs``: a retried request queues nothing twice.

The key is recorded in the transaction that queues the jobs, with a hash of
the request and the answer given. Sent again with the same body, the first
answer is given again; with another body, the request is refused (422). Two
requests with one key at the same moment: the second waits on the first's
row (MariaDB) or its write lock (SQLite), then finds the key. Keys are kept
``idempotency_keep_hours`` (cron deletes older ones), whatever became of
their jobs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest, QueueError
from graderqueue.store.db import Database
from graderqueue.store.models import IdempotencyKey, utcnow

KEY_MAX = 255


class KeyReused(QueueError):
    """This Idempotency-Key was already used with another request."""

    http_status = 422


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > KEY_MAX or not key.isprintable():
        raise BadRequest(f"An Idempotency-Key is 1 to {KEY_MAX} printable characters.")
    return key


def request_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def replay(session: Session, caller: str, key: str, digest: str) -> dict[str, Any] | None:
    """The answer first given to this key, or None if the key is new."""
    row = session.execute(
        select(IdempotencyKey.request_hash, IdempotencyKey.answer)
        .where(IdempotencyKey.caller == caller, IdempotencyKey.key == key)
        .with_for_update()
    ).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise KeyReused()
    return json.loads(row.answer)


def remember(session: Session, caller: str, key: str, digest: str, answer: dict[str, Any]) -> None:
    session.execute(
        insert(IdempotencyKey),
        {
            "caller": caller,
            "key": key,
            "request_hash": digest,
            "answer": json.dumps(answer),
            "created_at": utcnow(),
        },
    )


def purge(db: Database, keep_hours: int) -> int:
    """Forget keys older than ``keep_hours``; returns how many."""
    cutoff = utcnow() - timedelta(hours=keep_hours)
    with db.transaction() as session:
        return session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)
        ).rowcount
