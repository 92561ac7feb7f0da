"""A PHP graderqueue's database on MariaDB, as its schema file and migrations made it.

For the import's tests and benchmark. :class:`LegacyDatabase` creates the
base tables in a given (empty, ``gqtest_``) database, applies the migrations
asked for, and writes rows the way the PHP code did: through a non-strict
session (``sql_mode=''``), so left-out NOT NULL columns become zero dates
and ``''``, over a utf8 connection, even into the latin1 ``server_tokens``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

ALL_MIGRATIONS = ("2016-12-15", "2016-12-19", "2022-02-20")
UTF8 = "ENGINE=InnoDB DEFAULT CHARSET=utf8"

_BASE = [
    f"CREATE TABLE tags (id int NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    f" name varchar(255) NOT NULL) {UTF8}",
    f"CREATE TABLE server_types (id int NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    f" name varchar(255) NOT NULL) {UTF8}",
    f"CREATE TABLE type_tags (typeid int NOT NULL, tagid int NOT NULL,"
    " PRIMARY KEY (typeid, tagid), FOREIGN KEY (typeid) REFERENCES server_types (id),"
    f" FOREIGN KEY (tagid) REFERENCES tags (id)) {UTF8}",
    f"CREATE TABLE platforms (id int NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " name varchar(255) NOT NULL, public_key varchar(1000) NOT NULL,"
    " restrict_paths text NOT NULL, force_tag int NOT NULL DEFAULT -1,"
    f" return_url varchar(255) NOT NULL, UNIQUE KEY name (name)) {UTF8}",
    f"CREATE TABLE servers (id int NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " name varchar(255) NOT NULL, ssl_serial varchar(255) NOT NULL,"
    " ssl_dn varchar(255) NOT NULL, wakeup_url text NOT NULL,"
    " wakeup_fails int NOT NULL DEFAULT 0, type int NOT NULL,"
    " max_concurrent_jobs int NOT NULL DEFAULT 1, last_poll_time datetime NOT NULL,"
    f" FOREIGN KEY (type) REFERENCES server_types (id)) {UTF8}",
    f"CREATE TABLE queue (id int NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " name varchar(255) NOT NULL, jobusertaskid varchar(255) NOT NULL,"
    " job_repeats int NOT NULL DEFAULT 0,"
    " status enum('queued','sent','error') NOT NULL DEFAULT 'queued',"
    " priority int NOT NULL DEFAULT 0, timeout_sec int NOT NULL DEFAULT 300,"
    " nb_fails int NOT NULL DEFAULT 0, received_from int NOT NULL DEFAULT -1,"
    " received_time datetime NOT NULL, sent_to int NOT NULL DEFAULT -1,"
    " sent_time datetime NOT NULL, timeout_time datetime NULL, tags text NOT NULL,"
    " taskrevision varchar(40) NOT NULL DEFAULT '', jobdata longtext NOT NULL,"
    f" UNIQUE KEY jobusertaskid (jobusertaskid)) {UTF8}",
    f"CREATE TABLE job_types (jobid int NOT NULL, typeid int NOT NULL,"
    f" PRIMARY KEY (jobid, typeid), FOREIGN KEY (typeid) REFERENCES server_types (id)) {UTF8}",
    f"CREATE TABLE done (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, jobid int NOT NULL,"
    " name varchar(255) NOT NULL, job_repeats int NOT NULL DEFAULT 0,"
    " priority int NOT NULL, timeout_sec int NOT NULL, nb_fails int NOT NULL,"
    " received_from int NOT NULL, received_time datetime NOT NULL, sent_to int NOT NULL,"
    " sent_time datetime NOT NULL, tags text NOT NULL, jobdata longtext NOT NULL,"
    " done_time datetime NOT NULL, resultdata longtext NOT NULL,"
    " returnUrl varchar(255) NOT NULL,"
    " returnState enum('notSent','sent','error') NOT NULL DEFAULT 'notSent',"
    f" KEY jobid (jobid), KEY received_time (received_time)) {UTF8}",
    f"CREATE TABLE log (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, datetime datetime NOT NULL,"
    " log_type varchar(255) NOT NULL, job_id int NOT NULL, server_id int NOT NULL,"
    f" message varchar(255) NULL) {UTF8}",
    f"CREATE TABLE remote_users (id int NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    f" username varchar(255) NOT NULL, password varchar(32) NOT NULL) {UTF8}",
    f"CREATE TABLE tokens (token varchar(32) NOT NULL PRIMARY KEY,"
    f" expiration_time datetime NOT NULL) {UTF8}",
]
# Before 2016-05 and 2016-10 (no migration scripts): what a very old schema lacks.
_VERY_OLD = [
    "ALTER TABLE queue DROP KEY jobusertaskid, DROP COLUMN jobusertaskid,"
    " DROP COLUMN job_repeats, DROP COLUMN taskrevision",
    "ALTER TABLE done DROP COLUMN job_repeats",
    "DROP TABLE remote_users",
    "ALTER TABLE log MODIFY message varchar(255) NOT NULL",
]
_MIGRATIONS = {
    "2016-12-15": [
        "ALTER TABLE done ADD cpu_time_ms int unsigned NOT NULL DEFAULT 0,"
        " ADD real_time_ms int unsigned NOT NULL DEFAULT 0,"
        " ADD max_real_time_ms int unsigned NOT NULL DEFAULT 0,"
        " ADD is_success tinyint unsigned NOT NULL DEFAULT 0,"
        " ADD task_path varchar(255) COLLATE utf8_unicode_ci NOT NULL DEFAULT '',"
        " ADD task_name varchar(32) COLLATE utf8_unicode_ci NOT NULL DEFAULT '',"
        " ADD language varchar(32) COLLATE utf8_unicode_ci NOT NULL DEFAULT ''",
    ],
    "2016-12-19": [
        "ALTER TABLE done CHANGE sent_time grading_start_time datetime NOT NULL,"
        " CHANGE done_time grading_end_time datetime NOT NULL",
        "ALTER TABLE queue CHANGE sent_time grading_start_time datetime NULL",
    ],
    "2022-02-20": [
        "CREATE TABLE server_tokens (id int NOT NULL AUTO_INCREMENT PRIMARY KEY,"
        " name varchar(255) NOT NULL, token varchar(16) NOT NULL, type int NOT NULL,"
        " max_concurrent_jobs int NOT NULL DEFAULT 1) ENGINE=InnoDB DEFAULT CHARSET=latin1",
        "ALTER TABLE servers ADD token_id int NOT NULL, ADD ip varchar(255) NOT NULL",
    ],
}


def remote_password(username: str, password: str) -> str:
    """What the PHP queue stored for a remote user: md5 of ``username@password``."""
    return hashlib.md5(f"{username}@{password}".encode()).hexdigest()


class LegacyDatabase:
    """The PHP queue's tables in the database at *url* (which must be empty)."""

    def __init__(
        self, url: str, migrations: Sequence[str] = ALL_MIGRATIONS, *, very_old: bool = False
    ) -> None:
        # The PHP code's connection: utf8 (3-byte), whatever the table's charset.
        self.url = (
            make_url(url)
            .update_query_dict({"charset": "utf8"})
            .render_as_string(hide_password=False)
        )
        self.engine = create_engine(self.url, poolclass=NullPool)
        self.migrations = tuple(migrations)
        with self.connect() as conn:
            for sql in _BASE + (_VERY_OLD if very_old else []):
                conn.exec_driver_sql(sql)
            for name in self.migrations:
                for sql in _MIGRATIONS[name]:
                    conn.exec_driver_sql(sql)

    def connect(self) -> Connection:
        """A non-strict session, as every working PHP installation had."""
        conn = self.engine.connect()
        conn.exec_driver_sql("SET SESSION sql_mode = ''")
        return conn

    def insert(self, table: str, **row: Any) -> None:
        self.insert_many(table, [row])

    def insert_many(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        names = list(rows[0])
        columns = ", ".join(f"`{n}`" for n in names)
        values = ", ".join(f":{n}" for n in names)
        with self.connect() as conn:
            conn.execute(text(f"INSERT INTO `{table}` ({columns}) VALUES ({values})"), rows)
            conn.commit()

    def scalar(self, sql: str) -> Any:
        with self.connect() as conn:
            return conn.execute(text(sql)).scalar()

    def dispose(self) -> None:
        self.engine.dispose()
