"""The head schema for each test's database at the cost of a copy, and RSA keys
made once per test process.

Every ``QueueSetup`` needs the whole schema and a few key pairs. Running the
twelve migrations for each test cost 0.5 s on SQLite and 1.3 s on MariaDB, and
each 2048-bit key ~60 ms: together the largest part of a short test, and CPU
the two cores of CI share. Here the migrations run once per test process into
a template, built by the real migrations (``migrate.upgrade``), and each test
gets a copy: the file on SQLite, the template's own ``SHOW CREATE TABLE``
statements on MariaDB. The migrations themselves stay tested by the tests that
run them on purpose (``test_schema_matches_models``, ``test_migration_*``,
``test_admin_verdicts``' and ``test_autoscale_cli``'s migration tests).
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy import inspect, text

from graderqueue.config import load_settings
from graderqueue.protocol import keys
from graderqueue.store import migrate
from graderqueue.store.db import Database
from graderqueue.store.private_files import private_dir, write_private
from harness.mariadb import create_test_database, drop_test_database

_sqlite_template: Path | None = None
# MariaDB server (URL without the database) -> the statements that make the schema.
_mariadb_schemas: dict[str, list[str]] = {}
_key_pairs: list[tuple[bytes, bytes]] = []


def key_pair(n: int) -> tuple[bytes, bytes]:
    """The n-th key pair of this process: distinct n, distinct keys; the same n
    in another test gives the same key (tests never share a database)."""
    while len(_key_pairs) <= n:
        _key_pairs.append(keys.generate_rsa_pem())
    return _key_pairs[n]


def install_key(key_dir: Path, name: str, pair: tuple[bytes, bytes]) -> None:
    """Write a key pair where ``keys.create_key`` would have made one, unless
    the key exists already (as ``create_key``: an instance made before keeps it)."""
    private_dir(key_dir)
    if (key_dir / f"{name}.pem").exists():
        return
    write_private(key_dir / f"{name}.pem", pair[0])
    (key_dir / f"{name}.pub.pem").unlink(missing_ok=True)
    write_private(key_dir / f"{name}.pub.pem", pair[1])


def give_schema(db: Database) -> None:
    """Give ``db`` the head schema, as ``migrate.upgrade`` would.

    A database that has tables already (a second node on the same database,
    a test's own schema) is upgraded by the migrations, as before.
    """
    if _has_tables(db):
        migrate.upgrade(db)
    elif db.dialect == "sqlite" and db.sqlite_file is not None:
        _copy_sqlite(db)
    elif db.dialect in ("mysql", "mariadb"):
        _copy_mariadb(db)
    else:
        migrate.upgrade(db)


def _has_tables(db: Database) -> bool:
    if db.dialect == "sqlite":
        path = db.sqlite_file
        if path is None or not path.exists():
            return False
    with db.engine.connect() as conn:
        return bool(inspect(conn).get_table_names())


def _copy_sqlite(db: Database) -> None:
    global _sqlite_template
    if _sqlite_template is None:
        folder = Path(tempfile.mkdtemp(prefix="gq-schema-"))
        atexit.register(shutil.rmtree, folder, True)
        template = Database(load_settings({"instance_path": str(folder)}, environ={}))
        migrate.upgrade(template)
        template.dispose()
        path = template.sqlite_file
        assert path is not None
        with sqlite3.connect(path) as conn:  # everything in the main file, no WAL left
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _sqlite_template = path
    target = db.sqlite_file
    assert target is not None
    db.dispose()  # no connection may hold the file being replaced
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(_sqlite_template, target)


def _copy_mariadb(db: Database) -> None:
    server = db.engine.url.set(database="").render_as_string(hide_password=False)
    if server not in _mariadb_schemas:
        _mariadb_schemas[server] = _mariadb_schema(db.engine.url.render_as_string(False))
    with db.engine.begin() as conn:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for statement in _mariadb_schemas[server]:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")


def _mariadb_schema(any_url: str) -> list[str]:
    """Build a template database with the migrations; read back how to make it."""
    url = create_test_database(any_url)
    atexit.register(drop_test_database, url)
    template = Database(load_settings({"database_url": url}, environ={}))
    try:
        migrate.upgrade(template)
        statements = []
        with template.engine.connect() as conn:
            tables = conn.execute(text("SHOW TABLES")).scalars().all()
            for table in tables:
                create = conn.execute(text(f"SHOW CREATE TABLE `{table}`")).one()[1]
                statements.append(create)
            # Rows the migrations wrote (the Alembic version, any seeded row).
            for table in tables:
                for row in conn.execute(text(f"SELECT * FROM `{table}`")).mappings():
                    columns = ", ".join(f"`{c}`" for c in row)
                    values = ", ".join(_literal(v) for v in row.values())
                    statements.append(f"INSERT INTO `{table}` ({columns}) VALUES ({values})")
    finally:
        template.dispose()
    return statements


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"
