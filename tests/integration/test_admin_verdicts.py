"""Grader errors: their own verdict, an event, out of the pass rates, and a filter with a
bulk requeue on the done list (SQLite and MariaDB where the queries matter)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from graderqueue.admin.activity import activity
from graderqueue.admin.job_lists import JobFilter, done_jobs
from graderqueue.admin.task_statistics import task_statistics
from graderqueue.admin.windows import window_by_key
from graderqueue.config import load_settings
from graderqueue.identity import passwords
from graderqueue.queue.verdicts import grader_error
from graderqueue.store import migrate
from graderqueue.store.db import Database
from graderqueue.store.models import AdminUser, Base, Event, Job, Result, utcnow


def report(score: str = "100", checker_exit: int = 0) -> dict:
    return {
        "execution": {"timeTakenMs": 5, "exitCode": 0},
        "checker": {"stdout": {"data": score}, "exitCode": checker_exit},
    }


def taskgrader(*reports: dict) -> dict:
    return {
        "errorcode": 0,
        "errormsg": "ok",
        "jobdata": {"executions": [{"testsReports": list(reports)}]},
    }


PASSED = taskgrader(report())
FAILED = taskgrader(report(), report("0"))
CRASHED = {"errorcode": 1, "errormsg": "Fatal program error (exit code 1).", "jobdata": {}}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (PASSED, False),
        (FAILED, False),
        (taskgrader({"execution": {"exitCode": 139}}), False),  # the solution crashed
        ({"errorcode": 0, "jobdata": {"solutions": [], "executions": []}}, False),
        (CRASHED, True),
        ({"errorcode": "1", "errormsg": "Refused by the grading server."}, True),
        (taskgrader(report(), {"sanitizer": {"exitCode": 1}}), True),  # bad test data
        (taskgrader(report("", checker_exit=2)), True),  # the checker crashed
    ],
)
def test_what_counts_as_a_grader_error(result, expected):
    assert grader_error(result) is expected


def grade(queue, results: dict[str, dict]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Each named job sent, claimed and completed with its result through the protocol."""
    client = queue.client_for(queue.platform("p-verdicts"))
    token = queue.server_token("t-c")
    ids = {}
    for name, result in results.items():
        ids[name] = client.sendjob(
            {"taskPath": f"/tasks/{name[:4]}", "extraParams": {"solutionLanguage": "c"}},
            jobname=name,
            tags="c",
        )
        assert queue.post("/poll.php", server_token=token, nbtasks="0")["jobid"] == ids[name]
        saved = queue.post(
            "/sendresults.php",
            server_token=token,
            jobid=str(ids[name]),
            resultdata=json.dumps(result),
        )
        assert saved["errorcode"] == 0, saved
    return ids


def test_a_grader_error_is_logged_and_left_out_of_the_pass_rates(queue):
    ids = grade(queue, {"sum-ok": PASSED, "sum-wrong": FAILED, "sum-crash": CRASHED})
    with queue.db.reading() as session:
        verdicts = dict(session.execute(select(Result.job_id, Result.verdict)).all())
        assert verdicts == {
            ids["sum-ok"]: "passed",
            ids["sum-wrong"]: "failed",
            ids["sum-crash"]: "grader_error",
        }
        logged = session.execute(
            select(Event.job_id, Event.message).where(Event.kind == "grader_error")
        ).all()
        assert [job for job, _ in logged] == [ids["sum-crash"]]
        assert "errorcode 1: Fatal program error" in logged[0][1]

        now = utcnow()
        stats = task_statistics(
            session, "task_name", now - timedelta(hours=1), now + timedelta(seconds=1)
        )
        (row,) = stats.rows
        assert (row.key, row.count, row.success, row.grader_errors) == ("sum-", 3, 1, 1)
        assert row.success_rate == pytest.approx(0.5)  # 1 of the 2 judged, not 1 of 3
        dashboard = activity(session, window_by_key("15m"))
        assert dashboard.done == 3
        assert dashboard.success_rate == pytest.approx(0.5)

        def listed(**filters: str) -> list[int]:
            return [j.id for j in done_jobs(session, JobFilter(**filters)).rows]

        assert listed(verdict="grader_error") == [ids["sum-crash"]]
        assert listed(verdict="failed") == [ids["sum-wrong"]]
        assert listed(verdict="passed", task="sum-", language="c") == [ids["sum-ok"]]
        assert listed(task="sum-", language="java") == []
        assert sorted(listed(task="sum-")) == sorted(ids.values())


def log_in(client) -> str:  # type: ignore[no-untyped-def]
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"username": "alice", "password": "correct horse battery", "csrf_token": token}
    assert client.post("/admin/login", data=form).status_code == 302
    page = client.get("/admin/jobs/done").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_bulk_requeue_of_a_filtered_done_list_asks_then_requeues_only_those(sqlite_queue):
    queue = sqlite_queue
    ids = grade(queue, {"a-ok": PASSED, "a-crash": CRASHED, "b-crash": CRASHED})
    with queue.db.transaction() as session:
        session.add(
            AdminUser(
                username="alice", password_hash=passwords.hash_password("correct horse battery")
            )
        )
    client = queue.app.test_client()
    csrf = log_in(client)

    page = client.get("/admin/jobs/done?result=grader_error").get_data(as_text=True)
    assert page.count('class="badge grader-error"') == 2 and "a-ok" not in page
    assert 'id="bulk-requeue"' in page
    url = "/admin/jobs/done/requeue?result=grader_error&name=a-"

    before = queue.snapshot()
    assert client.post(url, data={}).status_code == 400  # no CSRF token: refused
    asked = client.post(url, data={"csrf_token": csrf})
    assert asked.status_code == 200 and "1 done jobs match these filters" in asked.get_data(
        as_text=True
    )
    assert queue.snapshot() == before  # asking changes nothing

    done = client.post(url, data={"csrf_token": csrf, "confirmed": "yes"})
    assert done.status_code == 302 and "result=grader_error" in done.headers["Location"]
    with queue.db.reading() as session:
        status = dict(session.execute(select(Job.id, Job.status)).all())
        requeued = session.scalars(select(Event.job_id).where(Event.kind == "requeued")).all()
    assert status == {ids["a-ok"]: "done", ids["a-crash"]: "queued", ids["b-crash"]: "done"}
    assert requeued == [ids["a-crash"]]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_migration_0009_fills_the_verdicts_of_stored_results(kind, tmp_path, request):
    url = "" if kind == "sqlite" else request.getfixturevalue("mariadb_url")
    db = Database(load_settings({"instance_path": str(tmp_path), "database_url": url}, environ={}))
    migrate.upgrade(db, "0008")
    stored = {1: (PASSED, 1), 2: (FAILED, 0), 3: (CRASHED, 0), 4: ("not json", 0)}
    with db.engine.begin() as conn:
        for job_id, (result, ok) in stored.items():
            conn.execute(
                text(
                    "INSERT INTO jobs (id, received_via, name, jobusertaskid, job_repeats, status,"
                    " priority, timeout_sec, nb_fails, received_time, tags, taskrevision, jobdata)"
                    " VALUES (:n, '', 'j', :u, 0, 'done', 0, 60, 0, '2026-12-01 10:00:00',"
                    " '', '', '{}')"
                ),
                {"n": job_id, "u": f"u{job_id}"},
            )
            conn.execute(
                text(
                    "INSERT INTO results (job_id, resultdata, cpu_time_ms, real_time_ms,"
                    " max_real_time_ms, is_success, task_path, task_name, language)"
                    " VALUES (:n, :r, 0, 0, 0, :ok, '', '', '')"
                ),
                {
                    "n": job_id,
                    "r": result if isinstance(result, str) else json.dumps(result),
                    "ok": ok,
                },
            )
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        verdicts = dict(conn.execute(text("SELECT job_id, verdict FROM results")).all())
        assert verdicts == {1: "passed", 2: "failed", 3: "grader_error", 4: "failed"}
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
