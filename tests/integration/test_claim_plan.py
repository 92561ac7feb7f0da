"""The claim is served by an index in its ORDER BY order: no sort, whatever the table size.

A plan check, not a timing: with an index whose columns or directions do not
match ``ORDER BY priority DESC, job_id``, MariaDB and SQLite both add a sort
over every queued job of the type, which is what makes a claim slow at depth.
"""

from __future__ import annotations

import random

import pytest
from sqlalchemy import insert, text

from graderqueue.queue import claim
from graderqueue.store.models import Job, JobType, ServerType, utcnow

TYPES = 20
JOBS = 4000


def _fill(queue) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    now = utcnow()
    with queue.db.transaction() as session:
        type_ids = [
            session.execute(insert(ServerType).values(name=f"bulk{i}")).inserted_primary_key[0]
            for i in range(TYPES)
        ]
        rows = [
            {"name": f"j{i}", "jobusertaskid": f"u{i}", "dedup_key": f"u{i}", "status": "queued",
             "priority": rng.randrange(5), "timeout_sec": 300, "nb_fails": 0, "received_time": now,
             "tags": "", "taskrevision": "", "jobdata": "{}", "job_repeats": 0, "received_via": ""}
            for i in range(JOBS)
        ]  # fmt: skip
        session.execute(insert(Job), rows)
        ids = [r[0] for r in session.execute(text("SELECT id FROM jobs ORDER BY id"))]
        session.execute(
            insert(JobType),
            [
                {"job_id": job_id, "type_id": rng.choice(type_ids), "status": "queued",
                 "priority": rows[n]["priority"]}
                for n, job_id in enumerate(ids)
            ],
        )  # fmt: skip
    if queue.db.dialect != "sqlite":
        with queue.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE TABLE job_types, jobs")


def _sql(queue, statement) -> str:  # type: ignore[no-untyped-def]
    return str(
        statement.compile(dialect=queue.db.engine.dialect, compile_kwargs={"literal_binds": True})
    )


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "after-analyze"])
def test_claim_uses_the_claim_index_without_sorting(queue, analyzed: bool):
    _fill(queue)
    queued_q, expired_q = claim.claim_queries(1, 3, 2, utcnow())
    with queue.db.engine.connect() as conn:
        if analyzed and queue.db.dialect == "sqlite":
            # Statistics of a table where every job is queued (what
            # `PRAGMA optimize` may record) once turned the expired-lease
            # lookup into a walk over every job of the type.
            conn.exec_driver_sql("ANALYZE")
        if queue.db.dialect == "sqlite":
            plan = " | ".join(
                row[-1]
                for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + _sql(queue, queued_q))
            )
            assert "ix_job_types_claim" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
            expired = " | ".join(
                row[-1]
                for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + _sql(queue, expired_q))
            )
            assert "ix_jobs_status_lease" in expired, expired
        else:
            rows = conn.exec_driver_sql("EXPLAIN " + _sql(queue, queued_q)).mappings().all()
            first = rows[0]
            assert first["table"] == "job_types", rows
            assert first["key"] == "ix_job_types_claim", rows
            assert all("filesort" not in (r["Extra"] or "") for r in rows), rows
            assert all("temporary" not in (r["Extra"] or "") for r in rows), rows
