"""Named leases in the database: one node at a time runs what they guard."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from graderqueue.errors import Unavailable
from graderqueue.store.db import Database
from graderqueue.store.models import (
    Lock,
    utcnow,
)

log = logging.getLogger(__name__)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


# -- named leases ---------------------------------------------------------------


def acquire_lease(db: Database, name: str, holder: str, seconds: float) -> bool:
    """Take the lease ``name`` if free, expired or already ours, in one transaction."""
    now = utcnow()
    try:
        with db.transaction() as session:
            row = session.get(Lock, name, with_for_update=True)
            if row is None:
                session.add(
                    Lock(name=name, holder=holder, expires_at=now + timedelta(seconds=seconds))
                )
                session.flush()
            elif row.holder == holder or row.expires_at <= now:
                row.holder = holder
                row.expires_at = now + timedelta(seconds=seconds)
            else:
                return False
    except IntegrityError:
        return False  # another node inserted it at the same moment
    except Unavailable:
        # A deadlock or lock wait with another node taking it now, or a
        # database that is down: a plain read tells which (and raises if down).
        with db.reading() as session:
            session.get(Lock, name)
        return False
    return True


def release_lease(db: Database, name: str, holder: str) -> None:
    with db.transaction() as session:
        session.execute(delete(Lock).where(Lock.name == name, Lock.holder == holder))
