"""``graderqueue import-legacy``: the PHP queue's data into this queue's database.

Order matters: the registry first (jobs name its ids), then the queue, the
done jobs and the log, then the id counters moved above every old id so new
jobs never take an id a platform already holds. Safe to run again: rows
already here are left alone and counted as such. The PHP database is only
read (a read-only session).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from graderqueue.legacy.job_import import JobImport
from graderqueue.legacy.progress import Report
from graderqueue.legacy.registry_import import RegistryImport
from graderqueue.legacy.source import LegacyDatabase, zone
from graderqueue.store.db import Database

# Our table -> the SQL giving the highest id the PHP queue used for it.
_HIGHEST = {
    "tags": "(SELECT MAX(id) FROM tags)",
    "server_types": "(SELECT MAX(id) FROM server_types)",
    "platforms": "(SELECT MAX(id) FROM platforms)",
    "servers": "(SELECT MAX(id) FROM servers)",
    "server_tokens": "(SELECT MAX(id) FROM server_tokens)",
    "remote_users": "(SELECT MAX(id) FROM remote_users)",
    "jobs": "GREATEST(COALESCE((SELECT MAX(id) FROM queue), 0),"
    " COALESCE((SELECT MAX(jobid) FROM done), 0))",
    "events": "(SELECT MAX(id) FROM log)",
}
_SOURCE_TABLE = {"jobs": "queue", "events": "log"}


@dataclass
class Options:
    url: str
    timezone: str
    dry_run: bool = False
    batch: int = 5000


def run(db: Database, options: Options) -> Report:
    """Import everything; with ``dry_run`` read and count, write nothing."""
    tz = zone(options.timezone)
    source = LegacyDatabase(options.url)
    report = Report()
    try:
        source.inspect()
        write = not options.dry_run
        with db.transaction() if write else db.reading() as session:
            known = RegistryImport(source, report, tz).run(session, write)
        jobs = JobImport(source, db, known, report, tz, write=write, batch=options.batch)
        queue_ids = jobs.queue()
        jobs.done(queue_ids)
        jobs.log()
        if write:
            raise_counters(db, source)
    finally:
        source.dispose()
    return report


def raise_counters(db: Database, source: LegacyDatabase) -> None:
    """Every kept id's counter above the PHP queue's highest: new ids are new.

    On MariaDB, AUTO_INCREMENT (never lowered: a second run changes
    nothing); on SQLite, ``sqlite_sequence`` where a table has one (the
    others take max(id) + 1, which the imported rows already are).
    """
    highest = {}
    for table, sql in _HIGHEST.items():
        legacy = _SOURCE_TABLE.get(table, table)
        if source.has(legacy):
            highest[table] = int(source.rows(f"SELECT {sql} AS n")[0]["n"] or 0)
    with db.transaction() as session:
        if db.dialect == "sqlite":
            if session.execute(
                text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
            ).first():
                for table, n in highest.items():
                    session.execute(
                        text("UPDATE sqlite_sequence SET seq = :n WHERE name = :t AND seq < :n"),
                        {"n": n, "t": table},
                    )
            return
        for table, n in highest.items():
            current = session.execute(
                text(
                    "SELECT AUTO_INCREMENT FROM information_schema.tables"
                    " WHERE table_schema = DATABASE() AND table_name = :t"
                ),
                {"t": table},
            ).scalar()
            if current is None or current <= n:
                session.execute(text(f"ALTER TABLE `{table}` AUTO_INCREMENT = {n + 1}"))
