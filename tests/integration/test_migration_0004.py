"""Upgrading a queue with jobs in it from 0003 to 0004 (the JSON API's states and
records) keeps every row and leaves a schema the models describe, on both
databases; on SQLite the status columns are widened in place (0004's note)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from graderqueue.config import load_settings
from graderqueue.store import migrate
from graderqueue.store.db import Database
from graderqueue.store.models import Base


def database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Database:
    url = "" if kind == "sqlite" else request.getfixturevalue("mariadb_url")
    settings = load_settings({"instance_path": str(tmp_path), "database_url": url}, environ={})
    return Database(settings)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_an_upgrade_from_0003_keeps_the_jobs_and_ends_at_the_models(kind, tmp_path, request):
    db = database(kind, tmp_path, request)
    migrate.upgrade(db, "0003")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO server_types (id, name) VALUES (1, 't')"))
        for n in range(1, 4):
            conn.execute(
                text(
                    "INSERT INTO jobs (id, received_via, name, jobusertaskid, dedup_key,"
                    " job_repeats, status, priority, timeout_sec, nb_fails, received_time,"
                    " tags, taskrevision, jobdata)"
                    " VALUES (:n, '', :name, :u, :u, 0, 'queued', :n, 60, 0,"
                    " '2026-12-01 10:00:00', 'c', '', '{}')"
                ),
                {"n": n, "name": f"job-{n}", "u": f"u{n}"},
            )
            conn.execute(
                text(
                    "INSERT INTO job_types (job_id, type_id, status, priority)"
                    " VALUES (:n, 1, 'queued', :n)"
                ),
                {"n": n},
            )
    migrate.upgrade(db)

    with db.engine.begin() as conn:
        jobs = conn.execute(text("SELECT id, name, status FROM jobs ORDER BY id")).all()
        assert [tuple(r) for r in jobs] == [(n, f"job-{n}", "queued") for n in range(1, 4)]
        assert conn.execute(text("SELECT COUNT(*) FROM job_types")).scalar() == 3
        # The widened column takes the new, longer status.
        conn.execute(text("UPDATE jobs SET status = 'cancelled' WHERE id = 1"))
        assert conn.execute(text("SELECT status FROM jobs WHERE id = 1")).scalar() == "cancelled"
        if kind == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    # Down to 0003 and up again: both directions run; 0003 deleted the jobs
    # it cancelled, so the downgrade does.
    cfg = migrate.alembic_config()
    with db.engine.connect() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0003")
        connection.commit()
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        assert [r[0] for r in conn.execute(text("SELECT id FROM jobs ORDER BY id"))] == [2, 3]
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
