"""Remote users (the ``rRequest`` way in): checking a password, upgrading old hashes."""

from __future__ import annotations

from sqlalchemy import select, update

from graderqueue.identity import passwords
from graderqueue.store.db import Database
from graderqueue.store.models import RemoteUser


def authenticate(db: Database, username: str, password: str) -> bool:
    """Whether ``username``/``password`` is a remote user's.

    A hash imported from the PHP queue (md5) is accepted once, here, and
    replaced by an Argon2id hash of the same password in the same breath, so
    the user notices nothing and the weak hash is gone. The replacement is
    conditional on the old hash: two first uses at once both succeed, and
    one of them writes.
    """
    with db.reading() as session:
        stored = session.scalar(
            select(RemoteUser.password_hash).where(RemoteUser.username == username)
        )
    if stored is not None and passwords.is_legacy_md5(stored):
        # The dummy Argon2 check keeps a legacy account as slow to answer as
        # any other, so timing does not tell old accounts apart.
        passwords.verify(None, password)
        ok = passwords.verify_legacy_md5(stored, username, password)
    else:
        ok = passwords.verify(stored, password)
    if ok and stored is not None and passwords.needs_rehash(stored):
        with db.transaction() as session:
            session.execute(
                update(RemoteUser)
                .where(RemoteUser.username == username, RemoteUser.password_hash == stored)
                .values(password_hash=passwords.hash_password(password))
            )
    return ok
