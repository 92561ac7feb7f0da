"""Password hashing for admin and remote users: Argon2id (argon2-cffi).

Remote users imported from the PHP graderqueue (``graderqueue import-legacy``)
arrive with its hash, an unsalted md5 of ``username@password``, stored as
``legacy-md5:<hex>``. :func:`verify` never accepts that form: only
:func:`verify_legacy_md5` does, and its one caller replaces the hash with an
Argon2id one at that first successful use (identity/remote_users.py).
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

LEGACY_MD5_PREFIX = "legacy-md5:"


@functools.cache
def _dummy() -> str:
    """Verifying against this when a user is unknown costs the same time as a
    real check, so response times do not reveal which user names exist."""
    return _hasher.hash("graderqueue-dummy-password")


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("empty password")
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def is_legacy_md5(password_hash: str | None) -> bool:
    return bool(password_hash) and password_hash.startswith(LEGACY_MD5_PREFIX)  # type: ignore[union-attr]


def legacy_md5_hash(md5_hex: str, php_username: str, username: str) -> str:
    """How a PHP remote user's hash is stored: the md5, and the PHP user name
    it was made with when the import had to rename the user (the name is
    part of what was hashed)."""
    stored = LEGACY_MD5_PREFIX + md5_hex.lower()
    return stored if php_username == username else f"{stored}:{php_username}"


def verify_legacy_md5(password_hash: str, username: str, password: str) -> bool:
    """Whether ``password`` matches a PHP graderqueue hash (md5 of ``username@password``)."""
    if not is_legacy_md5(password_hash) or not password:
        return False
    expected, _, php_username = password_hash.removeprefix(LEGACY_MD5_PREFIX).partition(":")
    salt_name = php_username or username
    given = hashlib.md5(f"{salt_name}@{password}".encode(), usedforsecurity=False).hexdigest()
    return hmac.compare_digest(expected.lower().encode(), given.encode())


def needs_rehash(password_hash: str) -> bool:
    """Whether a hash that just verified should be replaced (legacy, or old Argon2 settings)."""
    if is_legacy_md5(password_hash):
        return True
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True
