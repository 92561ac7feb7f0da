"""``/readyz``: whether this node can do its work now, for a load balancer or an orchestrator.

``/healthz`` only says the process answers. Ready means: the database
answers, its schema is the one this code was written for (a node left
behind by a rolling upgrade, or a database restored from an old backup, is
not), and the queue's key is loaded and still on disk (without it a restart
would fail, and other processes cannot open tokens).
"""

from __future__ import annotations

import functools
import logging

from sqlalchemy import text

from graderqueue.protocol.keys import QueueKeys, public_pem_of
from graderqueue.store import migrate
from graderqueue.store.db import Database

log = logging.getLogger(__name__)


@functools.cache
def _head() -> str | None:
    """The code's newest revision: it cannot change while the process runs."""
    return migrate.head_revision()


def _database(db: Database) -> bool:
    with db.reading() as session:
        return session.execute(text("SELECT 1")).scalar() == 1


def _schema(db: Database) -> bool:
    return migrate.current_revision(db) == _head()


def _keys(keys: QueueKeys) -> bool:
    """The active key is loaded, and its file is still the same key."""
    on_disk = (keys.key_dir / f"{keys.active_name}.pem").read_bytes()
    return public_pem_of(on_disk) == keys.active.public_pem


# Checks failing now: a load balancer asks every few seconds, the log says it once.
_failing: set[str] = set()


def checks(db: Database, keys: QueueKeys) -> dict[str, bool]:
    """Each check's outcome; a check that raises has failed."""
    found = {}
    for name, check in (
        ("database", lambda: _database(db)),
        ("schema", lambda: _schema(db)),
        ("keys", lambda: _keys(keys)),
    ):
        try:
            found[name] = bool(check())
        except Exception:
            if name not in _failing:
                log.warning("readiness: the %s check failed", name, exc_info=True)
            found[name] = False
        if not found[name] and name not in _failing:
            _failing.add(name)
            log.warning("readiness: %s is not ready", name)
        elif found[name] and name in _failing:
            _failing.discard(name)
            log.info("readiness: %s is ready again", name)
    return found
