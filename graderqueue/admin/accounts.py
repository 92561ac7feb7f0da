"""The admin accounts as the interface's log-in and sessions read them.

Creating, changing and removing accounts is the CLI's; here they are only
looked up, and a successful log-in recorded.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

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
