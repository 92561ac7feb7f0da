"""Reading the PHP graderqueue's database as its code wrote it (docs/MIGRATING.md).

The PHP queue ran in non-strict SQL mode with local times and PHP's
``json_encode``; this module turns its rows into plain values: zero dates
become None, local times become naive UTC, JSON text is re-encoded as this
queue stores it. The connection is read-only, so the PHP database is never
written, whatever happens here.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from graderqueue.errors import ConfigError

#: Tables every installation has; the others are looked for.
BASE_TABLES = ("tags", "server_types", "type_tags", "platforms", "servers", "queue", "done", "log")


T = TypeVar("T")
_END = object()


class LegacySourceError(ConfigError):
    """The legacy database cannot be read as a PHP graderqueue's."""


def zone(name: str) -> ZoneInfo:
    """The PHP server's time zone, by its IANA name (``Europe/Paris``)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise LegacySourceError(f"Unknown time zone {name!r}: give an IANA name.") from exc


def to_utc(value: object, tz: ZoneInfo) -> datetime | None:
    """A DATETIME the PHP server wrote in its local time, as naive UTC.

    Zero dates (``0000-00-00``, which PyMySQL hands back as text) are None.
    A local time that happened twice (the autumn change) is read as its
    first occurrence, as MySQL itself does.
    """
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def php_json(value: str | None, *, empty_object: bool) -> str:
    """JSON text written by PHP's ``json_encode``, as this queue stores JSON.

    ``\\uXXXX`` and ``\\/`` are read by any JSON parser; PHP wrote an empty
    object as ``[]``, so ``[]`` becomes ``{}`` where an object is meant.
    Text that is not JSON (``''``, a cut value) is kept as it was: getjob
    shows it as the PHP queue did. SQL NULL becomes ``''``.
    """
    if value is None:
        return ""
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return value
    if empty_object and parsed == []:
        parsed = {}
    return json.dumps(parsed)


class LegacyDatabase:
    """The PHP queue's database: which of its migrations it has, and its rows."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if not parsed.drivername.startswith(("mysql", "mariadb")) or not parsed.database:
            raise LegacySourceError(
                "--from must be a MySQL/MariaDB URL naming the PHP queue's database, "
                "e.g. mysql+pymysql://USER:PW@HOST/DB"
            )
        # utf8 on the wire: the latin1 server_tokens table was written through
        # a utf8 connection and reads back right only through one.
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        self.engine: Engine = create_engine(parsed, poolclass=NullPool)
        self.columns: dict[str, set[str]] = {}

    def connect(self) -> Connection:
        """A read-only connection: the importer cannot write the PHP database."""
        conn = self.engine.connect()
        conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
        return conn

    def inspect(self) -> None:
        """Learn which tables and columns exist (which migrations ran)."""
        with self.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns"
                    " WHERE table_schema = DATABASE()"
                )
            ).all()
        for table, column in rows:
            self.columns.setdefault(str(table), set()).add(str(column))
        missing = [t for t in BASE_TABLES if t not in self.columns]
        if missing:
            raise LegacySourceError(
                f"Not a PHP graderqueue database: no table {', '.join(missing)}."
            )

    def has(self, table: str, column: str | None = None) -> bool:
        if column is None:
            return table in self.columns
        return column in self.columns.get(table, set())

    def pick(self, table: str, *wanted: str, aliases: dict[str, str] | None = None) -> str:
        """A SELECT list of *wanted* columns; a column this installation lacks
        comes back as NULL, one renamed by a migration under its new name."""
        parts = []
        for name in wanted:
            source = name
            if not self.has(table, name) and aliases and self.has(table, aliases.get(name, "")):
                source = aliases[name]
            parts.append(
                f"`{source}` AS `{name}`" if self.has(table, source) else f"NULL AS `{name}`"
            )
        return ", ".join(parts)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql))]

    def count(self, table: str) -> int:
        if not self.has(table):
            return 0
        with self.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM `{table}`")).scalar_one())

    def stream(self, sql: str, batch: int) -> Iterator[list[dict[str, Any]]]:
        """Rows in batches, through a server-side cursor: a table of millions
        of rows is never held in memory."""
        with self.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(text(sql))
            while chunk := result.fetchmany(batch):
                yield [dict(r._mapping) for r in chunk]

    def dispose(self) -> None:
        self.engine.dispose()


def prefetch(produce: Callable[[], Iterator[T]], depth: int = 2) -> Iterator[T]:
    """The items of ``produce()``, made on a thread of their own while the
    caller handles the previous ones: reading and mapping the old rows goes
    on while the new database writes the last batch. An error on that thread
    is raised here; stopping early stops the thread.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        items = produce()
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the caller, raised there
            put(_Failed(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="legacy-read", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
