"""MariaDB for the tests and benchmarks: find a server or start a throwaway one.

Tests that need MariaDB call :func:`mariadb_base_url` (usually once per
session, from a fixture), then :func:`create_test_database` per test or per
module, and :func:`drop_test_database` afterwards (or both at once with
:func:`temporary_database`). Every database the suite makes is named
``gqtest_<8 hex>``, so a shared server is never touched outside those
names, and several runs can share one server at the same time.

Where the server comes from, in order:

1. ``GRADERQUEUE_TEST_DATABASE_URL`` (for example
   ``mysql+pymysql://ci:secret@db.example:3306/``). Its database part is not
   used as a database: the suite makes its own ``gqtest_`` databases there.
   If it is set but does not answer, that is an error, never a skip.
2. A server on 127.0.0.1:3306 that lets root in without a password (the
   usual developer machine and what ``.ci/run`` tries to start).
3. A throwaway :class:`MariaDBServer` in a temporary directory, if the
   MariaDB server binaries are installed.

When none works, tests are skipped on a developer machine and fail under
``CI=true``: CI installs MariaDB, so a missing server there is a bug.
"""

from __future__ import annotations

import atexit
import getpass
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from harness.processes import die_with_parent, launch_on_a_free_port

__all__ = [
    "ENV_URL",
    "TEST_DB_PREFIX",
    "MariaDBServer",
    "MariaDBUnavailable",
    "create_test_database",
    "drop_test_database",
    "find_mariadb_binaries",
    "in_ci",
    "mariadb_base_url",
    "mariadb_base_url_or_skip",
    "server_answers",
    "temporary_database",
]

ENV_URL = "GRADERQUEUE_TEST_DATABASE_URL"
TEST_DB_PREFIX = "gqtest_"
DEFAULT_LOCAL_URL = "mysql+pymysql://root@127.0.0.1:3306/"

_SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
_TEST_DB_RE = re.compile(r"^gqtest_[0-9a-z_]+$")


class MariaDBUnavailable(Exception):
    """No MariaDB could be found or started; ``str()`` is the skip reason.

    Raised only outside CI. Under ``CI=true`` the same situation raises a
    plain :class:`RuntimeError`, which a skip handler does not catch.
    """


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where skips become failures."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in _SEARCH_DIRS:
            candidate = Path(directory, name)
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def find_mariadb_binaries() -> tuple[str, str] | None:
    """Return ``(server, install_db)`` paths, or None when not installed.

    Looks on PATH and in the sbin/bin directories (sbin is often not on a
    non-root PATH), preferring the MariaDB names over the mysql ones.
    """
    server = _which("mariadbd", "mysqld")
    install_db = _which("mariadb-install-db", "mysql_install_db")
    if server and install_db:
        return server, install_db
    return None


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path.name})"
    return text[-limit:]


def server_answers(url: str, timeout: float = 2.0) -> str | None:
    """Return None when the server at *url* lets us in, else the error text."""
    engine = create_engine(
        _without_database(make_url(url)),
        poolclass=NullPool,
        connect_args={"connect_timeout": max(1, round(timeout))},
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").all()
    except Exception as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"
    finally:
        engine.dispose()
    return None


class MariaDBServer:
    """A private MariaDB server in a temporary directory, for one test run.

    ``start()`` initialises a data directory (root without password), starts
    ``mariadbd`` on a free loopback port with durability settings relaxed for
    speed, and waits until it accepts a connection. ``stop()`` shuts it down
    and deletes the directory. Also a context manager. A server still running
    at interpreter exit is stopped by an atexit hook, and the server gets
    SIGTERM if the test process is killed, so none is left behind.
    """

    def __init__(
        self,
        *,
        startup_timeout: float = 60.0,
        extra_args: tuple[str, ...] | list[str] = (),
        parent_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        binaries = find_mariadb_binaries()
        if binaries is None:
            raise FileNotFoundError(
                "MariaDB server binaries not found (mariadbd/mysqld and "
                "mariadb-install-db/mysql_install_db); install mariadb-server"
            )
        self.server_binary, self.install_db_binary = binaries
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self._parent_dir = parent_dir
        self.base_dir: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    # -- paths ---------------------------------------------------------------
    def _path(self, name: str) -> Path:
        if self.base_dir is None:
            raise RuntimeError("MariaDBServer not started")
        return self.base_dir / name

    @property
    def datadir(self) -> Path:
        return self._path("data")

    @property
    def socket_path(self) -> Path:
        return self._path("mysqld.sock")

    @property
    def error_log(self) -> Path:
        return self._path("mariadbd.err")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server (no database): root over TCP."""
        if self.port is None:
            raise RuntimeError("MariaDBServer not started")
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """The install log and the server's error log, for failure messages."""
        if self.base_dir is None:
            return ""
        return (
            "--- install-db ---\n"
            + _tail(self._path("install-db.log"))
            + "\n--- mariadbd ---\n"
            + _tail(self.error_log)
        )

    # -- life cycle ----------------------------------------------------------
    def start(self) -> MariaDBServer:
        if self.running:
            return self
        began = time.monotonic()
        self.base_dir = Path(tempfile.mkdtemp(prefix="gq-mariadb-", dir=self._parent_dir))
        atexit.register(self.stop)
        try:
            self._install_db()
            launch_on_a_free_port(self)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _user_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def _install_db(self) -> None:
        user = "root" if os.geteuid() == 0 else getpass.getuser()
        cmd = [
            self.install_db_binary,
            "--no-defaults",
            "--auth-root-authentication-method=normal",
            f"--datadir={self.datadir}",
            f"--user={user}",
            "--skip-test-db",
        ]
        log = self._path("install-db.log")
        with log.open("wb") as out:
            result = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=self.startup_timeout,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed with exit code {result.returncode}\n" + _tail(log)
            )

    def _server_cmd(self) -> list[str]:
        assert self.base_dir is not None
        tmp = self._path("tmp")
        tmp.mkdir(exist_ok=True)
        return [
            self.server_binary,
            "--no-defaults",  # must come first
            *self._user_args(),
            f"--datadir={self.datadir}",
            f"--socket={self.socket_path}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self._path('mariadbd.pid')}",
            f"--log-error={self.error_log}",
            f"--tmpdir={tmp}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
            "--innodb-doublewrite=0",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--max-connections=500",
            *self.extra_args,
        ]

    def _launch_and_wait(self, *, last_attempt: bool) -> bool:
        """Start mariadbd; True when it answers, False to retry another port."""
        self.error_log.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            self._server_cmd(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + self.startup_timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = _tail(self.error_log)
                self.process = None
                if not last_attempt and "already in use" in log:
                    return False
                raise RuntimeError(
                    f"mariadbd exited while starting (port {self.port})\n" + self.log_text()
                )
            error = server_answers(self.url, timeout=1)
            if error is None:
                return True
            last_error = error
            time.sleep(0.05)
        self._terminate()
        raise RuntimeError(
            f"mariadbd did not accept connections on port {self.port} within "
            f"{self.startup_timeout:.0f} s (last error: {last_error})\n" + self.log_text()
        )

    def _terminate(self, timeout: float = 30.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # mariadbd shuts down cleanly on SIGTERM
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        """Shut the server down and delete its directory. Safe to repeat."""
        self._terminate()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> MariaDBServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.running else "stopped"
        return f"<MariaDBServer {state}>"


def _without_database(url: URL) -> URL:
    # URL.set() ignores None, so clear the database with _replace().
    return url._replace(database="")


def _server_url(url: str) -> str:
    """Drop the database part of *url*, keep credentials, host and options."""
    parsed = make_url(url)
    if not parsed.drivername.startswith(("mysql", "mariadb")):
        raise ValueError(f"{ENV_URL} must be a MySQL/MariaDB URL, got {parsed!r}")
    return _without_database(parsed).render_as_string(hide_password=False)


def _unavailable(reason: str) -> Exception:
    if in_ci():
        return RuntimeError(f"MariaDB is required under CI=true: {reason}")
    return MariaDBUnavailable(reason)


def mariadb_base_url() -> tuple[str, MariaDBServer | None]:
    """Find or start a MariaDB server for tests.

    Returns ``(url, server)``: *url* is a SQLAlchemy URL to the server with no
    database, *server* the throwaway :class:`MariaDBServer` this call started
    (the caller must ``stop()`` it) or None when an existing server is used.

    Raises :class:`MariaDBUnavailable` (message = skip reason) when no server
    can be had, or :class:`RuntimeError` when that happens under ``CI=true``
    or when ``GRADERQUEUE_TEST_DATABASE_URL`` is set but does not answer.
    """
    configured = os.environ.get(ENV_URL, "").strip()
    if configured:
        url = _server_url(configured)
        error = server_answers(url, timeout=5)
        if error is not None:
            shown = make_url(url).render_as_string(hide_password=True)
            raise RuntimeError(f"{ENV_URL}={shown} does not answer: {error}")
        return url, None

    local_error = server_answers(DEFAULT_LOCAL_URL)
    if local_error is None:
        return DEFAULT_LOCAL_URL, None

    if find_mariadb_binaries() is None:
        raise _unavailable(
            f"no MariaDB at 127.0.0.1:3306 ({local_error}), {ENV_URL} not set "
            "and MariaDB server binaries not installed"
        )
    server = MariaDBServer()
    try:
        server.start()
    except Exception as exc:
        raise _unavailable(f"could not start a throwaway MariaDB: {exc}") from exc
    return server.url, server


def mariadb_base_url_or_skip() -> tuple[str, MariaDBServer | None]:
    """:func:`mariadb_base_url`, skipping the calling test/fixture if none."""
    import pytest

    try:
        return mariadb_base_url()
    except MariaDBUnavailable as exc:
        pytest.skip(str(exc))


def _admin_engine(base_url: str):
    url = _without_database(make_url(base_url))
    url = url.update_query_dict({"charset": "utf8mb4"})
    return create_engine(url, poolclass=NullPool)


def create_test_database(base_url: str) -> str:
    """Create an empty ``gqtest_<8 hex>`` utf8mb4 database; return its URL.

    The returned SQLAlchemy URL names the database and carries
    ``charset=utf8mb4`` so the connection speaks the same character set.
    """
    name = f"{TEST_DB_PREFIX}{secrets.token_hex(4)}"
    engine = _admin_engine(base_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
    finally:
        engine.dispose()
    url = make_url(base_url).set(database=name)
    url = url.update_query_dict({"charset": "utf8mb4"})
    return url.render_as_string(hide_password=False)


def drop_test_database(url: str) -> None:
    """Drop the database named in *url*; refuse any name not ``gqtest_...``.

    The check is what keeps a mistyped URL from dropping real data.
    """
    name = make_url(url).database
    if not name or not _TEST_DB_RE.match(name):
        raise ValueError(
            f"refusing to drop database {name!r}: only {TEST_DB_PREFIX}* "
            "databases made by create_test_database may be dropped"
        )
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        engine.dispose()


@contextmanager
def temporary_database(base_url: str) -> Iterator[str]:
    """A fresh ``gqtest_`` database (its URL) for the ``with`` block, dropped after it."""
    url = create_test_database(base_url)
    try:
        yield url
    finally:
        drop_test_database(url)
