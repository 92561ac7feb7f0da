"""The event log: what operators need to see afterwards (timeouts, bad results, ...)."""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.orm import Session

from graderqueue.store.models import Event, utcnow

# Kinds of events, named as the original's log types where one existed.
TIMEOUT = "error_timeout"
BAD_RESULT = "error_in_result"
# A result kept as done although grading broke (queue/verdicts.py): not a judgement.
GRADER_ERROR = "grader_error"
RELEASED = "released_by_server"
WAKEUP_FAILED = "wakeup_failed"
WAKEUP_OK = "wakeup_ok"
JOB_ERROR = "job_error"
REQUEUED = "requeued"
CANCELLED = "cancelled"
HELD = "held"
RELEASED_HOLD = "released"
HANDED_OUT = "handed_out"  # not in the event log: the timeline's name for job_handouts rows
SERVER_REGISTERED = "server_registered"
SERVER_REMOVED = "server_removed"
DELIVERY_FAILED = "delivery_failed"
DELIVERY_GIVEN_UP = "delivery_given_up"
REDELIVERY = "redelivery_requested"
ALERT_SENT = "alert_sent"
API_TOKEN_ADDED = "api_token_added"
API_TOKEN_REVOKED = "api_token_revoked"
SERVER_DRAINED = "server_drained"
SERVER_UNDRAINED = "server_undrained"
DISPATCH_PAUSED = "dispatch_paused"
DISPATCH_RESUMED = "dispatch_resumed"
# The registry's life cycle (registry/lifecycle.py, registry/fleet.py): who changed what.
PLATFORM_UPDATED = "platform_updated"
PLATFORM_DISABLED = "platform_disabled"
PLATFORM_ENABLED = "platform_enabled"
PLATFORM_REMOVED = "platform_removed"
SERVER_UPDATED = "server_updated"
SERVER_TOKEN_UPDATED = "server_token_updated"
SERVER_TOKEN_REVOKED = "server_token_revoked"
SERVER_TOKEN_ROTATED = "server_token_rotated"
TYPE_UPDATED = "type_updated"
TYPE_REMOVED = "type_removed"
TAG_REMOVED = "tag_removed"
ADMIN_REMOVED = "admin_removed"
RUN_STAGE = "run_stage"  # a run moved to its next stage or ended (queue/runs_progress.py)

MESSAGE_MAX = 2000


def log_event(
    session: Session,
    kind: str,
    *,
    job_id: int | None = None,
    server_id: int | None = None,
    message: str = "",
) -> None:
    session.add(
        Event(
            time=utcnow(),
            kind=kind,
            job_id=job_id,
            server_id=server_id,
            message=message[:MESSAGE_MAX],
        )
    )


def log_many(session: Session, kind: str, rows: list[dict[str, object]]) -> None:
    """One event per row (``job_id``, ``server_id``, ``message``), in one statement."""
    if not rows:
        return
    now = utcnow()
    session.execute(
        insert(Event),
        [
            {
                "time": now,
                "kind": kind,
                "job_id": row.get("job_id"),
                "server_id": row.get("server_id"),
                "message": str(row.get("message", ""))[:MESSAGE_MAX],
            }
            for row in rows
        ],
    )
