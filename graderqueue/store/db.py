"""Database engine and transactions, the same on SQLite and MariaDB/MySQL.

SQLite: WAL, ``synchronous=NORMAL`` and every transaction starts with
``BEGIN IMMEDIATE``. Taking the write lock up front means two writers queue
instead of deadlocking on a lock upgrade, and it makes the claim (select
then update) exclusive without row locks. Writers queue on a thread lock
within a process and on an ``flock`` across processes (:class:`FileWriteLock`),
not on SQLite's sleeping busy handler.

MariaDB/MySQL: READ COMMITTED, so a claim's ``SKIP LOCKED`` scan sees what
other nodes committed a moment ago.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from graderqueue.config import Settings
from graderqueue.errors import Unavailable
from graderqueue.store.private_files import private_dir, touch_private

READ_ONLY = "graderqueue_read_only"


def make_engine(settings: Settings) -> Engine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url, settings.sqlite_busy_timeout_ms)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_recycle=3600,
        # A traceback in the log must not carry a statement's values (job
        # data, hashes, names): the statement itself is enough to debug.
        hide_parameters=True,
        pool_size=10,
        max_overflow=40,
        isolation_level="READ COMMITTED",
    )


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:" and not path.startswith("file:"):
        # Private whatever the umask: the folder 0700 and the file 0600
        # before SQLite opens it (its -wal and -shm copy the file's mode).
        private_dir(Path(path).parent)
        touch_private(Path(path))
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event, not the driver, open transactions.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # Read-only work (see Database.reading) never needs the write lock:
        # in WAL mode readers neither wait for nor block the writer.
        readonly = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


class FileWriteLock:
    """Writers of one SQLite file, across processes, take turns on an ``flock``.

    SQLite's own busy handler sleeps between tries (up to 100 ms each), so a
    writer waiting for another process's commit wakes long after it could
    have gone. This lock, taken before ``BEGIN IMMEDIATE`` and released after
    the commit, lets the next writer in within 0.2 to 4 ms. Bounded:
    after ``wait_sec`` the writer goes on without it and SQLite's busy
    timeout has the last word (a process stopped while holding it cannot
    block the others for ever). The file is opened once per process: a
    forked child shares its parent's descriptor, and with it the lock.
    """

    FIRST_PAUSE_SEC = 0.0002
    LAST_PAUSE_SEC = 0.004

    def __init__(self, path: Path, wait_sec: float) -> None:
        self.path = path
        self.wait_sec = wait_sec
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            touch_private(self.path)
            self._fd = os.open(self.path, os.O_RDWR)
            self._pid = os.getpid()
        return self._fd

    def acquire(self) -> bool:
        """Take the lock (True), or give up after ``wait_sec`` (False)."""
        fd = self._descriptor()
        deadline = time.monotonic() + self.wait_sec
        pause = self.FIRST_PAUSE_SEC
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                # Short at first (a write transaction takes about a
                # millisecond), longer for a long one, never SQLite's 100 ms.
                time.sleep(pause)
                pause = min(pause * 2, self.LAST_PAUSE_SEC)

    def release(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class Database:
    """The engine and a session factory; one per process and settings."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        file = self.sqlite_file
        self._file_lock = (
            FileWriteLock(
                file.with_name(file.name + "-writelock"), settings.sqlite_busy_timeout_ms / 1000
            )
            if file is not None
            else None
        )
        self._local = threading.local()
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file, or None (another database, or in memory)."""
        database = self.engine.url.database if self.dialect == "sqlite" else None
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        Driver errors that mean "try again" (lost connection, lock wait timeout,
        deadlock, database busy) become :class:`Unavailable` (errorcode 1).
        """
        return self._transaction(self._sessions)

    def reading(self) -> contextlib.AbstractContextManager[Session]:
        """Like :meth:`transaction`, for work that only reads.

        On SQLite it does not take the write lock, so pages and lookups never
        queue behind writers; elsewhere it is an ordinary transaction.
        """
        return self._transaction(self._read_sessions)

    @contextlib.contextmanager
    def _transaction(self, factory: sessionmaker[Session]) -> Iterator[Session]:
        # SQLite has one write lock per file, and its busy handler sleeps up to
        # 100 ms between tries: threads of one process take turns here
        # instead, and only processes compete for the file lock.
        serialize = self._write_lock is not None and factory is self._sessions
        if serialize:
            if getattr(self._local, "writing", False):
                # It would wait forever for the lock this thread holds.
                raise RuntimeError("a write transaction was opened inside another one")
            self._write_lock.acquire()
            self._local.writing = True
        file_locked = serialize and self._file_lock is not None and self._file_lock.acquire()
        session = factory()
        try:
            yield session
            session.commit()
        except (OperationalError, DBAPIError) as exc:
            session.rollback()
            if is_transient(exc):
                raise Unavailable() from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
            if file_locked:
                self._file_lock.release()  # type: ignore[union-attr]
            if serialize:
                self._local.writing = False
                self._write_lock.release()

    def dispose(self) -> None:
        self.engine.dispose()


# MySQL error numbers that mean "retry": deadlock, lock wait timeout,
# server gone away, lost connection, can't connect, too many connections.
_TRANSIENT_MYSQL = {1213, 1205, 2006, 2013, 2003, 1040, 1053}


def is_transient(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _TRANSIENT_MYSQL:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text
