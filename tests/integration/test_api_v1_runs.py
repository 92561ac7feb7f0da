"""Runs (POST /api/v1/runs and the rest): stages in order, failures, control, refusals,
stage changes decided once under concurrency, fair share, and callback URLs."""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from graderqueue.delivery import callbacks
from graderqueue.protocol.keys import QueueKeys
from graderqueue.queue import control, runs_progress
from graderqueue.registry import lifecycle
from graderqueue.store import events
from graderqueue.store.models import Callback, Event, Job, JobStatus, Result, Run
from harness.platform_endpoint import PlatformEndpoint
from harness.queue import QueueSetup
from tests.integration.test_api_v1_jobs import Api
from tests.integration.test_graderserver_queue import Live, program, stop, wait_for

OK = {"errorcode": 0, "errormsg": "ok", "jobdata": {"score": 1}}


def run_body(users: list[str], *, pre: bool = True, post: bool = True, **extra):  # type: ignore[no-untyped-def]
    body = {
        "env": {"TASK": "/tasks/add"},
        "roster": [{"USER": u} for u in users],
        "job": {"jobdata": {"taskPath": "${TASK}", "user": "${USER}", "lit": "$${USER}"}},
        "tags": "c",
        **extra,
    }
    if pre:
        body["pre_job"] = {"jobdata": {"taskPath": "${TASK}", "stage": "pre"}}
    if post:
        body["post_job"] = {"jobdata": {"taskPath": "${TASK}", "stage": "post"}}
    return body


def grade(queue, result=OK):  # type: ignore[no-untyped-def]
    """A grading server takes the best job and sends ``result``; returns the job polled."""
    token = queue.server_token("t-c")
    job = queue.post("/poll.php", server_token=token, nbtasks="0")
    assert job["errorcode"] == 0, job
    sent = {"jobid": str(job["jobid"]), "resultdata": json.dumps(result)}
    saved = queue.post("/sendresults.php", server_token=token, **sent)
    assert saved["errorcode"] == 0, saved
    return job


def test_stages_run_in_order_and_the_post_job_sees_every_outcome(queue):
    api = Api(queue, platform=queue.platform("first"))
    answer = api.post("/runs", run_body(["ada", "alan", "grace"]))
    assert answer.status_code == 201, answer.get_data(as_text=True)
    api.conforms("post", "/runs", answer)
    run_id = answer.get_json()["id"]
    assert answer.get_json() == {"id": run_id, "state": "PRE_PROCESSING_STAGE"}
    status = api.get(f"/runs/{run_id}").get_json()
    assert status["student_jobs"] == {}
    assert list(status["pre_processing_job"].values()) == ["QUEUED"]

    pre = grade(queue)
    assert pre["jobdata"]["stage"] == "pre"
    assert pre["jobdata"]["run"]["roster"] == [{"USER": u} for u in ("ada", "alan", "grace")]
    status = api.get(f"/runs/{run_id}").get_json()
    assert status["state"] == "STUDENTS_STAGE"
    assert list(status["student_jobs"].values()) == ["QUEUED"] * 3

    seen = [grade(queue, OK if n != 1 else {**OK, "errorcode": 1}) for n in range(3)]
    assert [j["jobdata"]["user"] for j in seen] == ["ada", "alan", "grace"]
    assert {j["jobdata"]["lit"] for j in seen} == {"${USER}"}
    assert api.get(f"/runs/{run_id}").get_json()["state"] == "POST_PROCESSING_STAGE"

    post = grade(queue)
    outcomes = post["jobdata"]["run"]["outcomes"]
    assert [(o["index"], o["state"], o["errorcode"]) for o in outcomes] == [
        (0, "FINISHED", 0),
        (1, "FINISHED", 1),
        (2, "FINISHED", 0),
    ]
    status = api.get(f"/runs/{run_id}").get_json()
    assert status["state"] == "FINISHED" and status["ended_at"] is not None
    assert status["counts"]["ended"] == 3 and status["counts"]["FINISHED"] == 3
    assert list(status["post_processing_job"].values()) == ["FINISHED"]
    # Another platform does not see it; an unknown run is 404 too.
    other = Api(queue, platform=queue.platform("second"))
    assert other.get(f"/runs/{run_id}").status_code == 404
    assert api.get("/runs/999999").status_code == 404


def test_a_failing_pre_job_fails_the_run_and_no_roster_job_runs(sqlite_queue):
    queue = sqlite_queue
    api = Api(queue, platform=queue.platform("first"))
    run_id = api.post("/runs", run_body(["a", "b"])).get_json()["id"]
    grade(queue, {**OK, "errorcode": 1})
    status = api.get(f"/runs/{run_id}").get_json()
    assert status["state"] == "FAILED" and status["student_jobs"] == {}
    with queue.db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
    assert api.post(f"/runs/{run_id}/hold").status_code == 409


def test_a_failing_post_job_fails_the_run_and_no_pre_job_starts_with_the_roster(sqlite_queue):
    queue = sqlite_queue
    api = Api(queue, platform=queue.platform("first"))
    answer = api.post("/runs", run_body(["a", "b"], pre=False))
    assert answer.get_json()["state"] == "STUDENTS_STAGE"
    run_id = answer.get_json()["id"]
    grade(queue)
    grade(queue)
    post = grade(queue, {**OK, "errorcode": 1})
    assert post["jobdata"]["stage"] == "post"
    assert api.get(f"/runs/{run_id}").get_json()["state"] == "FAILED"


def test_cancel_hold_and_release_act_on_the_whole_run(queue):
    api = Api(queue, platform=queue.platform("first"))
    run_id = api.post("/runs", run_body(["a", "b", "c"], pre=False)).get_json()["id"]
    held = api.post(f"/runs/{run_id}/hold")
    assert held.status_code == 200, held.get_data(as_text=True)
    api.conforms("post", f"/runs/{run_id}/hold", held)
    assert held.get_json()["counts"]["HELD"] == 3
    assert api.post(f"/runs/{run_id}/release").get_json()["counts"]["QUEUED"] == 3
    cancelled = api.post(f"/runs/{run_id}/cancel").get_json()
    assert cancelled["state"] == "CANCELLED" and cancelled["counts"]["CANCELLED"] == 3
    status = api.get(f"/runs/{run_id}").get_json()
    assert status["post_processing_job"] == {} and status["ended_at"] is not None
    assert api.post(f"/runs/{run_id}/release").status_code == 409
    stranger = Api(queue, platform=queue.platform("x"))
    assert stranger.post(f"/runs/{run_id}/cancel").status_code == 404


def test_the_event_stream_tells_the_state_and_progress_and_resumes(sqlite_queue):
    queue = sqlite_queue
    api = Api(queue, platform=queue.platform("first"))
    run_id = api.post("/runs", run_body(["a"], pre=False, post=False)).get_json()["id"]
    grade(queue)
    stream = api.get(f"/runs/{run_id}/events").get_data(as_text=True)
    assert 'data: {"type": "state", "data": "FINISHED"}' in stream
    assert 'data: {"type": "progress", "data": 1}' in stream
    answer = api.http.get(
        f"/api/v1/runs/{run_id}/events", headers=api.headers({"Last-Event-ID": "FINISHED:1"})
    )
    assert "data:" not in answer.get_data(as_text=True)  # nothing new since


@pytest.mark.queue_settings(runs_roster_max=5)
def test_refusals_change_nothing(sqlite_queue):
    queue = sqlite_queue
    api = Api(queue, platform=queue.platform("first"))
    before = queue.snapshot()
    bad = run_body(["a", "b"])
    bad["job"]["jobdata"]["x"] = "${NOPE}"
    answer = api.post("/runs", bad)
    assert answer.status_code == 400
    assert "job 0: unknown variable NOPE" in answer.get_json()["detail"]
    for body, detail in [
        (run_body([str(n) for n in range(6)]), "over 5"),
        (run_body([]), "roster is a non-empty list"),
        (run_body(["a"], tags="nosuchtag"), "pre_job: Tag"),
        ({**run_body(["a"]), "pre_job": {"jobdata": {"run": 1}}}, "jobdata.run"),
        (run_body(["a"], callback_url="http://example.org/cb"), "not one this platform"),
    ]:
        answer = api.post("/runs", body)
        assert answer.status_code == 400, body
        assert detail in answer.get_json()["detail"], answer.get_json()
    after = queue.snapshot()
    assert {k: v for k, v in after.items() if k != "seen_token_ids"} == {
        k: v for k, v in before.items() if k != "seen_token_ids"
    }


def test_two_nodes_ending_jobs_at_once_start_each_stage_once(queue):
    """Two sessions end the last two roster jobs of a run at the same moment, and
    two fill the same roster at once: one post job, and every roster job once."""
    api = Api(queue, platform=queue.platform("first"))
    body = run_body(["a", "b"], pre=False)
    run_ids = [api.post("/runs", body).get_json()["id"] for _ in range(2)]
    for run_id in run_ids:
        with queue.db.reading() as session:
            jobs = list(session.scalars(select(Job.id).where(Job.run_id == run_id)))
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def end(job_id: int, barrier: threading.Barrier, errors: list[BaseException]) -> None:
            try:
                barrier.wait()
                with queue.db.transaction() as session:
                    control.act_many(session, [job_id], "cancel", actor="node")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=end, args=(j, barrier, errors)) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        with queue.db.reading() as session:
            roles = Counter(session.scalars(select(Job.run_role).where(Job.run_id == run_id)))
            assert roles == {"roster": 2, "post": 1}
            state = session.scalar(select(Run.state).where(Run.id == run_id))
            assert state == "POST_PROCESSING_STAGE"

    # A big roster filled by two nodes at once: each entry made once.
    body = run_body([f"u{n}" for n in range(120)], pre=True, priority=5)
    run_id = api.post("/runs", body).get_json()["id"]
    pre_job = grade(queue)
    assert pre_job["jobdata"]["run"]["id"] == run_id
    barrier = threading.Barrier(2)

    def fill() -> None:
        barrier.wait()
        runs_progress.continue_runs(queue.db, {run_id}, 10)

    threads = [threading.Thread(target=fill) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with queue.db.reading() as session:
        users = [
            json.loads(d)["user"]
            for d in session.scalars(
                select(Job.jobdata).where(Job.run_id == run_id, Job.run_role == "roster")
            )
        ]
    assert sorted(users) == sorted(f"u{n}" for n in range(120))


def test_a_big_low_priority_run_does_not_hold_back_another_platforms_jobs(sqlite_queue):
    queue = sqlite_queue
    flood = Api(queue, platform=queue.platform("flood"))
    contest = Api(queue, platform=queue.platform("contest"))
    assert flood.post("/runs", run_body([str(n) for n in range(300)], pre=False)).status_code == 201
    mine = [
        contest.post(
            "/jobs", {"jobdata": {"taskPath": "/t"}, "tags": "c", "jobusertaskid": str(n)}
        ).get_json()["id"]
        for n in range(5)
    ]
    handed = [grade(queue)["jobid"] for _ in range(10)]
    # Fair share: the two platforms take turns, whatever the run's size.
    assert set(mine) <= set(handed)


@pytest.mark.queue_settings(delivery_enabled=False)
def test_callbacks_to_allowed_hosts_only_delivered_once(sqlite_queue):
    queue = sqlite_queue
    platform = queue.platform("first", return_url="http://127.0.0.1:9/results")
    api = Api(queue, platform=platform)
    keys = QueueKeys(queue.settings.resolved_key_dir, queue.settings.key_name)
    with PlatformEndpoint(platform.private_pem, keys.active.public_pem) as endpoint:
        job = {"jobdata": {"taskPath": "/t"}, "tags": "c", "callback_url": endpoint.url}
        refused = api.post("/jobs", job)
        # The return URL's host by default, and a loopback address only if listed.
        assert refused.status_code == 400
        assert "private or local" in refused.get_json()["detail"]
        other = api.post("/jobs", {**job, "callback_url": "http://elsewhere.example/cb"})
        assert "not one this platform" in other.get_json()["detail"]
        with queue.db.transaction() as session:
            changes = lifecycle.PlatformChanges(callback_hosts="127.0.0.1")
            lifecycle.update_platform(session, "first", changes, actor="test")
        job_id = api.post("/jobs", job).get_json()["id"]
        run_id = api.post(
            "/runs", run_body(["a"], pre=False, post=False, callback_url=endpoint.url)
        ).get_json()["id"]
        assert grade(queue)["jobid"] == job_id
        grade(queue)
        poster = callbacks.Poster(queue.db, queue.settings, keys)
        assert poster.run_pass() == 2
        assert poster.run_pass() == 0
        got = endpoint.accepted
    assert len(got) == 2
    by_kind = {("run" if "run" in p else "job"): p for p in got}
    assert by_kind["job"]["sResultData"] == {"score": 1}
    assert by_kind["run"]["run"]["id"] == run_id and by_kind["run"]["run"]["state"] == "FINISHED"
    with queue.db.reading() as session:
        assert set(session.scalars(select(Callback.state))) == {"delivered"}
        done = select(func.count()).select_from(Job).where(Job.status == JobStatus.DONE)
        assert session.scalar(done) == 2


# -- end to end: real graderservers, two app nodes on MariaDB, a node restarted -----


@pytest.mark.mariadb
def test_a_run_over_real_graderservers_survives_an_app_restart(mariadb_url, tmp_path):
    """20 roster jobs with a pre and a post job, graded by 2 real graderservers through
    two gunicorn nodes, one of them stopped and started again mid-run (its grading
    server with it); the test's own app is a third node. Each stage starts once,
    each roster entry is graded once, and the post job sees every outcome."""
    queue = QueueSetup(tmp_path / "instance", mariadb_url, poll_wait_sec=2)
    try:
        queue.tag("c")
        queue.server_type("t-c", ["c"])
        api = Api(queue, platform=queue.platform("first"))
        body = "job = json.load(sys.stdin)\ntime.sleep(0.2)\nprint(json.dumps(job))\n"
        echo = program(tmp_path, "echo", body)
        nodes = [queue.gunicorn(workers=1, threads=8) for _ in range(2)]
        tokens = [queue.server_token("t-c", name=f"gs{n}") for n in range(2)]
        servers = [
            _graderserver(tmp_path, n.url, echo, tokens[i], f"gs{i}") for i, n in enumerate(nodes)
        ]
        users = [f"u{n}" for n in range(20)]
        run_id = api.post("/runs", run_body(users)).get_json()["id"]
        ended = lambda: api.get(f"/runs/{run_id}").get_json()["counts"]["ended"]  # noqa: E731
        wait_for(lambda: ended() >= 5, 90, "five roster jobs to end")
        # Node 0 restarts: its grading server stops (finishing its job), the node
        # stops, a new node 0 starts, and the grading server starts again (the
        # same server: same token, same address) and talks to it. A job the
        # queue handed out just as the server stopped polling goes back at its
        # first poll (nbtasks=0), not when its lease ends.
        servers[0].send_signal(signal.SIGTERM)
        assert servers[0].wait(30) == 0, stop(servers[0])
        nodes[0].stop()
        assert ended() < 20, "the run ended before the restart: make the jobs slower"
        nodes[0] = queue.gunicorn(workers=1, threads=8)
        servers[0] = _graderserver(tmp_path, nodes[0].url, echo, tokens[0], "gs0-again")
        state = lambda: api.get(f"/runs/{run_id}").get_json()["state"]  # noqa: E731
        wait_for(lambda: state() in ("FINISHED", "FAILED"), 120, "the run to end")
        for proc in servers:
            stop(proc)
        assert state() == "FINISHED"
        _assert_each_once(queue, run_id, users)
    finally:
        queue.close()


def _graderserver(tmp_path, url, command, token, name):  # type: ignore[no-untyped-def]
    live = Live(None, url, token, None, tmp_path / name)  # type: ignore[arg-type]
    live.tmp.mkdir()
    return live.start("-c", str(live.config(command)), "-l")


def _assert_each_once(queue, run_id, users):  # type: ignore[no-untyped-def]
    with queue.db.reading() as session:
        jobs = session.execute(
            select(Job.id, Job.run_role, Job.jobdata, Job.status).where(Job.run_id == run_id)
        ).all()
        ids = [j.id for j in jobs]
        query = select(Result.job_id, Result.resultdata).where(Result.job_id.in_(ids))
        results = {job_id: data for job_id, data in session.execute(query)}
        stages = list(
            session.scalars(
                select(Event.message).where(Event.kind == events.RUN_STAGE).order_by(Event.id)
            )
        )
    assert Counter(j.run_role for j in jobs) == {"pre": 1, "roster": 20, "post": 1}
    assert {j.status for j in jobs} == {JobStatus.DONE} and len(results) == 22
    graded = sorted(json.loads(j.jobdata)["user"] for j in jobs if j.run_role == "roster")
    assert graded == sorted(users)
    post = next(j for j in jobs if j.run_role == "post")
    outcomes = json.loads(results[post.id])["jobdata"]["run"]["outcomes"]
    assert [(o["index"], o["state"], o["errorcode"]) for o in outcomes] == [
        (n, "FINISHED", 0) for n in range(20)
    ]
    assert stages == [
        f"run #{run_id}: READY -> PRE_PROCESSING_STAGE",
        f"run #{run_id}: PRE_PROCESSING_STAGE -> STUDENTS_STAGE",
        f"run #{run_id}: STUDENTS_STAGE -> POST_PROCESSING_STAGE",
        f"run #{run_id}: POST_PROCESSING_STAGE -> FINISHED",
    ]
