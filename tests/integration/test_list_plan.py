"""A page of GET /api/v1/jobs walks one index from its cursor: no sort, no scan of
the table, on both databases. Plan checks, not timings: at this size MariaDB
picks these plans even without the FORCE INDEX hint that it needs at a
million jobs, so the hint itself is checked by the SQL it produces, and its
effect by scripts/bench/run api (docs/PERFORMANCE.md)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import insert, text

from graderqueue.queue import listing
from graderqueue.store.models import Job, Platform, utcnow

JOBS = 3000


def _fill(queue) -> int:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    now = utcnow()
    with queue.db.transaction() as session:
        platforms = [
            session.execute(insert(Platform).values(name=f"bulk{i}")).inserted_primary_key[0]
            for i in range(3)
        ]
        rows = [
            {"platform_id": rng.choice(platforms), "name": f"j{i % 50}", "jobusertaskid": f"u{i}",
             "status": rng.choice(["done"] * 8 + ["queued", "error"]), "priority": 0,
             "timeout_sec": 300, "nb_fails": 0, "received_time": now, "tags": "",
             "taskrevision": "", "jobdata": "{}", "job_repeats": 0, "received_via": ""}
            for i in range(JOBS)
        ]  # fmt: skip
        session.execute(insert(Job), rows)
        if queue.db.dialect == "sqlite":
            session.execute(text("ANALYZE"))
        else:
            session.execute(text("ANALYZE TABLE jobs"))
    return platforms[0]


def _sql(queue, statement) -> str:  # type: ignore[no-untyped-def]
    return str(
        statement.compile(dialect=queue.db.engine.dialect, compile_kwargs={"literal_binds": True})
    )


@pytest.mark.parametrize(
    ("filters", "platform", "index"),
    [
        ({"state": "FINISHED"}, False, "ix_jobs_status_id"),
        ({"state": "FAILED"}, True, "ix_jobs_platform_status_id"),
        ({}, True, "ix_jobs_platform_id"),
        ({"name": "j7"}, True, "ix_jobs_platform_name"),
        ({"jobusertaskid": "u42"}, False, "ix_jobs_usertask"),
    ],
    ids=["state", "platform-state", "platform", "platform-name", "jobusertaskid"],
)
def test_a_page_reads_one_index_without_sorting(queue, filters, platform, index):
    platform_id = _fill(queue)
    jobs = listing.JobFilter.parse(filters, platform_id=platform_id if platform else None)
    with queue.db.reading() as session:
        query = listing.page_query(session, jobs, limit=50, cursor=JOBS // 2)
        sql = _sql(queue, query)
    if queue.db.dialect != "sqlite" and index in listing.KEYSET_INDEXES:
        assert f"FORCE INDEX ({index})" in sql, sql
    with queue.db.engine.connect() as conn:
        if queue.db.dialect == "sqlite":
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert "TEMP B-TREE" not in plan, plan
            if index in ("ix_jobs_platform_name", "ix_jobs_usertask"):
                assert index in plan, plan
        else:
            rows = conn.exec_driver_sql("EXPLAIN " + sql).mappings().all()
            jobs_row = next(r for r in rows if r["table"] == "jobs")
            assert jobs_row["key"] == index, rows
            assert all("filesort" not in (r["Extra"] or "") for r in rows), rows
