"""Throttling of admin log-ins, per account and per client address.

The counts live in the database (table ``login_throttle``), so the limits
hold across workers and app nodes. An attempt is counted *before* its
password is checked: a burst of parallel attempts cannot slip past the
limit (each count is one atomic ``UPDATE`` on the row), and an attempt over
the limit is refused without costing a password hash.

Each count runs for a fixed window from its first attempt; rows whose window
is over are deleted by the next attempt, so the table holds only the last
window's subjects and needs no cron job. A successful login deletes the
account's count and takes its own attempt off the address's count, so the
address limit counts failures only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.store.models import LoginThrottle

SUBJECT_MAX = 255


@dataclass(frozen=True)
class Limits:
    window: timedelta
    per_account: int
    per_address: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            timedelta(seconds=settings.admin_login_window_sec),
            settings.admin_login_account_limit,
            settings.admin_login_address_limit,
        )


def account_subject(username: str) -> str:
    # Case-folded: MariaDB compares user names without case, and unknown
    # names are counted like real ones (the throttle must not tell them apart).
    return "account:" + username.strip().casefold()[:SUBJECT_MAX]


def address_subject(address: str) -> str:
    return "address:" + address[:SUBJECT_MAX]


def admit(
    session: Session, limits: Limits, username: str, address: str, now: datetime
) -> int | None:
    """Count one login attempt. None: go on and check the password;
    else the seconds to wait before an attempt is allowed again."""
    counted = sorted(
        [
            (account_subject(username), limits.per_account),
            (address_subject(address), limits.per_address),
        ]
    )
    # Only this attempt's own rows, by primary key and in key order: attempts
    # on several nodes at once then lock rows in one order and never deadlock
    # (a delete over the whole table did, on MariaDB). Other expired rows are
    # the hourly cron's (maintenance/purge.py).
    session.execute(
        delete(LoginThrottle)
        .where(
            LoginThrottle.subject.in_([subject for subject, _ in counted]),
            LoginThrottle.window_start <= now - limits.window,
        )
        .execution_options(synchronize_session=False)
    )
    wait: int | None = None
    for subject, limit in counted:
        window_start, attempts = _count(session, subject, now)
        if attempts > limit:
            left = math.ceil((window_start + limits.window - now).total_seconds())
            wait = max(wait or 1, left)
    return wait


def succeeded(session: Session, username: str, address: str) -> None:
    """The password was right: forget the account's attempts, and this one of the address."""
    forget_account(session, username)
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.subject == address_subject(address), LoginThrottle.attempts > 0)
        .values(attempts=LoginThrottle.attempts - 1)
        .execution_options(synchronize_session=False)
    )


def forget_account(session: Session, username: str) -> bool:
    """Let an account try again at once (``graderqueue admin unlock``); whether it had a count."""
    gone = session.execute(
        delete(LoginThrottle)
        .where(LoginThrottle.subject == account_subject(username))
        .execution_options(synchronize_session=False)
    )
    return bool(gone.rowcount)  # type: ignore[attr-defined]


def _count(session: Session, subject: str, now: datetime) -> tuple[datetime, int]:
    # One upsert, not an UPDATE then an INSERT: concurrent first attempts on
    # MariaDB each held a shared lock from the INSERT that lost the race and
    # then all waited to upgrade it (a deadlock, answered 503).
    if session.get_bind().dialect.name == "sqlite":
        upsert = sqlite_insert(LoginThrottle).values(subject=subject, window_start=now, attempts=1)
        upsert = upsert.on_conflict_do_update(
            index_elements=[LoginThrottle.subject],
            set_={"attempts": LoginThrottle.attempts + 1},
        )
    else:
        upsert = mysql_insert(LoginThrottle).values(subject=subject, window_start=now, attempts=1)
        upsert = upsert.on_duplicate_key_update(attempts=LoginThrottle.attempts + 1)
    session.execute(upsert)
    row = session.execute(
        select(LoginThrottle.window_start, LoginThrottle.attempts).where(
            LoginThrottle.subject == subject
        )
    ).one()
    return row.window_start, row.attempts
