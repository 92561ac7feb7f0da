"""SQLite writers in different processes take turns on the file lock, not on SQLite's sleeps."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

from sqlalchemy import text

from graderqueue.config import Settings
from graderqueue.store.db import Database

SPAWN = multiprocessing.get_context("spawn")


def _settings(folder: Path) -> Settings:
    return Settings(instance_path=folder, database_url=f"sqlite:///{folder / 'q.db'}")


def _hold_the_lock(folder: str, holding, go_on, log: str) -> None:  # type: ignore[no-untyped-def]
    """Another process: hold the writers' file lock (no SQLite lock at all) until told."""
    db = Database(_settings(Path(folder)))
    assert db._file_lock is not None and db._file_lock.acquire()
    holding.set()
    go_on.wait(30)
    with open(log, "a") as fh:
        fh.write("released\n")
    db._file_lock.release()


def test_a_writer_waits_for_another_process_holding_the_file_lock(tmp_path: Path):
    db = Database(_settings(tmp_path))
    with db.transaction() as session:
        session.execute(text("CREATE TABLE marks (n INTEGER)"))
    log = tmp_path / "order.log"
    holding, go_on = SPAWN.Event(), SPAWN.Event()
    other = SPAWN.Process(target=_hold_the_lock, args=(str(tmp_path), holding, go_on, str(log)))
    other.start()
    try:
        assert holding.wait(60)
        go_on.set()  # the other process writes "released", then lets go
        with db.transaction() as session:  # waits for that
            session.execute(text("INSERT INTO marks VALUES (1)"))
        with open(log, "a") as fh:
            fh.write("wrote\n")
    finally:
        other.join(30)
    # Without the file lock nothing stops this write (the other process holds
    # no SQLite lock), and "wrote" could come first.
    assert log.read_text().split() == ["released", "wrote"]
    lock_file = tmp_path / "q.db-writelock"
    assert stat.S_IMODE(os.stat(lock_file).st_mode) == 0o600


def test_reads_never_take_the_file_lock(tmp_path: Path):
    db = Database(_settings(tmp_path))
    with db.transaction() as session:
        session.execute(text("CREATE TABLE marks (n INTEGER)"))
    holding, go_on = SPAWN.Event(), SPAWN.Event()
    other = SPAWN.Process(
        target=_hold_the_lock, args=(str(tmp_path), holding, go_on, str(tmp_path / "x.log"))
    )
    other.start()
    try:
        assert holding.wait(60)
        with db.reading() as session:  # would wait out the busy timeout if reads took the lock
            assert session.scalar(text("SELECT count(*) FROM marks")) == 0
    finally:
        go_on.set()
        other.join(30)
