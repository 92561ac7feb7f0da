"""The instance folder and everything the queue writes in it are private to its user.

The SQLite database holds wake-up secrets, password hashes, jobs and results;
the folder holds the queue's private keys and the session secret. Modes are
set explicitly, never left to the umask (gunicorn's default umask is 0):
folders 0700, files 0600, created so from the start with ``os.open``.
SQLite gives its -wal and -shm files the mode of the database file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) with mode 0700 unless it exists.

    An existing folder keeps its mode: ``graderqueue init`` reports and fixes
    one that is too open (see :func:`fix_modes`).
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def touch_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (then leave it as is)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; refuses to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def queue_paths(instance: Path, key_dir: Path, sqlite_file: Path | None) -> list[Path]:
    """The folders and files the queue itself makes (not whatever else is there)."""
    paths = [instance, instance / "secret_key", key_dir]
    if key_dir.is_dir():
        paths += sorted(key_dir.glob("*.pem"))
    if sqlite_file is not None:
        paths += [sqlite_file.parent] + [
            sqlite_file.with_name(sqlite_file.name + suffix)
            for suffix in ("", "-wal", "-shm", "-journal")
        ]
    return paths


def fix_modes(paths: Iterable[Path]) -> list[str]:
    """Take group and other access away from these folders and files.

    Returns one line per path whose mode changed. Missing paths and
    symbolic links are left alone (a link's mode means nothing and its
    target may not be ours). Only the queue's own paths are given, never
    a walk of the folder: instance_path may be a folder shared with others.
    """
    fixed: list[str] = []
    seen: set[Path] = set()
    for path in paths:
        if path in seen or path.is_symlink() or not path.exists():
            continue
        seen.add(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            owner = DIR_MODE if path.is_dir() else FILE_MODE
            new = (mode & 0o7700) | owner
            os.chmod(path, new)
            fixed.append(f"Fixed the mode of {path}: {mode:04o} -> {new:04o}.")
    return fixed
