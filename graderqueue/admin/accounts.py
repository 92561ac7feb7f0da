"""The admin accounts as the interface's log-in and sessions read them.

Creating accounts and changing passwords is the CLI's; here they are looked
up, a successful log-in recorded, and an account removed (by the CLI or
another admin, logged as an event).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.errors import NotFound
from graderqueue.quoting import quote
from graderqueue.store import events
from graderqueue.store.models import AdminUser, utcnow


def account_named(session: Session, username: str) -> AdminUser | None:
    """The account of that name, as the database's collation compares names."""
    return session.scalars(select(AdminUser).where(AdminUser.username == username)).first()


def account_by_id(session: Session, user_id: int) -> AdminUser | None:
    return session.get(AdminUser, user_id)


def record_login(session: Session, checked: AdminUser) -> AdminUser | None:
    """The account, its last log-in set to now, if its password is still the one checked.

    The password is checked outside any transaction (a slow hash must not
    hold the write lock): a password changed or the account removed
    meanwhile makes that check void, and the answer None.
    """
    current = session.get(AdminUser, checked.id)
    if current is None or current.password_hash != checked.password_hash:
        return None
    current.last_login = utcnow()
    return current


def remove_account(session: Session, username: str, *, actor: str) -> None:
    """Delete an account; its sessions end at their next request (their stamp is gone)."""
    user = account_named(session, username)
    if user is None:
        raise NotFound(f"No admin {quote(username)}.")
    session.delete(user)
    events.log_event(session, events.ADMIN_REMOVED, message=f"admin {user.username}; by {actor}")


@dataclass(frozen=True)
class AccountRow:
    id: int
    username: str
    created_at: datetime
    last_login: datetime | None


def account_rows(session: Session) -> list[AccountRow]:
    """Every account by name (never its password hash or session stamp)."""
    return [
        AccountRow(u.id, u.username, u.created_at, u.last_login)
        for u in session.scalars(select(AdminUser).order_by(AdminUser.username))
    ]
