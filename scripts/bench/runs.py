"""Runs (docs/API.md "Runs"): submitting a big run, the queue's cost per run job
against a plain job, and a run graded end to end with an app node restarted.

- **submit**: ``POST /api/v1/runs`` with ``--runs-roster`` entries (10,000) and
  no pre job, through the app (Flask's test client, no HTTP): the time to the
  201 answer (every job rendered and validated, the first batch queued), and
  until every roster job is queued (the rest, a batch per transaction).
- **overhead**: the same number of jobs queued as a plain batch
  (``POST /api/v1/jobs``, 1,000 per request) and as a run's roster; then
  graded (poll + sendresults through the app): the cost per job of each, so
  the run's own bookkeeping shows.
- **end to end**: ``--runs-e2e`` roster jobs (200) with a pre and a post job,
  graded by 4 graderservers through two gunicorn nodes on MariaDB, one node
  (and its two graderservers) restarted when a quarter of the roster ended:
  wall time, and checks that each stage started once and each entry was
  graded once.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from typing import Any

from . import common


def add_arguments(parser: Any) -> None:
    parser.add_argument("--runs-roster", type=int, default=10_000, help="runs: roster size")
    parser.add_argument("--runs-e2e", type=int, default=200, help="runs: end-to-end roster")


def _api(bench: common.Bench) -> Any:
    from tests.integration.test_api_v1_jobs import Api

    return Api(bench.setup, platform=bench.platform)


def _body(count: int, *, pre: bool = False, post: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "env": {"TASK": "$ROOT_PATH/noop"},
        "roster": [{"USER": f"u{n}"} for n in range(count)],
        "job": {"jobdata": {"taskPath": "${TASK}", "user": "${USER}"}},
        "tags": "c",
    }
    if pre:
        body["pre_job"] = {"jobdata": {"taskPath": "${TASK}", "stage": "pre"}}
    if post:
        body["post_job"] = {"jobdata": {"taskPath": "${TASK}", "stage": "post"}}
    return body


def _roster_jobs(bench: common.Bench, run_id: int) -> int:
    from sqlalchemy import func, select

    from graderqueue.store.models import Job

    with bench.setup.db.reading() as session:
        query = select(func.count()).select_from(Job).where(Job.run_id == run_id)
        return session.scalar(query) or 0


def _submit(bench: common.Bench, count: int) -> tuple[float, float, int]:
    api = _api(bench)
    began = time.monotonic()
    answer = api.post("/runs", _body(count))
    answered = time.monotonic() - began
    assert answer.status_code == 201, answer.get_data(as_text=True)
    run_id = answer.get_json()["id"]
    while _roster_jobs(bench, run_id) < count:
        time.sleep(0.05)
    return answered, time.monotonic() - began, run_id


def _grade_all(bench: common.Bench, count: int) -> float:
    """Poll and send a result for ``count`` jobs through the app; seconds taken."""
    token = bench.setup.server_token("t-c")
    client = bench.setup.app.test_client()
    result = json.dumps({"errorcode": 0, "errormsg": "ok", "jobdata": {}})
    began = time.monotonic()
    for _ in range(count):
        job = client.post("/poll.php", data={"server_token": token, "nbtasks": "0"}).get_json()
        assert job["errorcode"] == 0, job
        form = {"server_token": token, "jobid": str(job["jobid"]), "resultdata": result}
        assert client.post("/sendresults.php", data=form).get_json()["errorcode"] == 0
    return time.monotonic() - began


def _plain(bench: common.Bench, count: int) -> float:
    api = _api(bench)
    began = time.monotonic()
    for start in range(0, count, 1000):
        batch = [
            {"jobdata": {"taskPath": "$ROOT_PATH/noop"}, "tags": "c", "jobusertaskid": str(n)}
            for n in range(start, min(count, start + 1000))
        ]
        assert api.post("/jobs", batch).status_code == 201
    return time.monotonic() - began


def run(args: Any) -> None:
    rows = []
    for backend in args.backends:
        workdir = common.tmpdir(f"runs-{backend}")
        try:
            with common.database(backend, workdir) as url:
                rows += _figures(backend, workdir, url, args.runs_roster)
        except common.Unavailable as exc:
            common.note(f"({backend}: {exc})")
    common.print_table(
        f"Runs: a {args.runs_roster}-entry run, and the cost per job against plain jobs",
        ["backend", "what", "seconds", "ms per job"],
        rows,
    )
    if "mariadb" in args.backends:
        try:
            _end_to_end(args.runs_e2e)
        except common.Unavailable as exc:
            common.note(f"(end to end: {exc})")


def _figures(backend: str, workdir: Any, url: str, count: int) -> list[list[Any]]:
    bench = common.make_queue(workdir / "big", url, delivery_enabled=False)
    answered, all_queued, _run_id = _submit(bench, count)
    out = [
        [backend, f"run of {count}: 201 answer", common.fmt(answered, 2), ""],
        [backend, f"run of {count}: all queued", common.fmt(all_queued, 2),
         common.fmt(all_queued * 1000 / count, 2)],
    ]  # fmt: skip
    bench.setup.close()
    sample = min(count, 2000)
    for kind in ("plain", "run"):
        with common.database(backend, workdir / kind) as fresh:
            bench = common.make_queue(workdir / kind, fresh, delivery_enabled=False)
            queued = _plain(bench, sample) if kind == "plain" else _submit(bench, sample)[1]
            graded = _grade_all(bench, sample)
            out.append([backend, f"{sample} {kind} jobs: queue", common.fmt(queued, 2),
                        common.fmt(queued * 1000 / sample, 2)])  # fmt: skip
            out.append([backend, f"{sample} {kind} jobs: grade", common.fmt(graded, 2),
                        common.fmt(graded * 1000 / sample, 2)])  # fmt: skip
            bench.setup.close()
    return out


def _end_to_end(count: int) -> None:
    from tests.integration.test_api_v1_runs import _graderserver, run_body
    from tests.integration.test_graderserver_queue import program, stop, wait_for

    workdir = common.tmpdir("runs-e2e")
    with common.database("mariadb", workdir) as url:
        bench = common.make_queue(workdir, url)
        setup, api = bench.setup, _api(bench)
        echo = program(workdir, "echo", "job = json.load(sys.stdin)\nprint(json.dumps(job))\n")
        nodes = [setup.gunicorn(workers=2, threads=8) for _ in range(2)]
        servers = [_graderserver(setup, workdir, nodes[n % 2].url, echo, n) for n in range(4)]
        began = time.monotonic()
        run_id = api.post("/runs", run_body([f"u{n}" for n in range(count)])).get_json()["id"]

        def status() -> dict[str, Any]:
            return api.get(f"/runs/{run_id}").get_json()

        wait_for(lambda: status()["counts"]["ended"] >= count // 4, 300, "a quarter")
        for proc in servers[0::2]:
            proc.send_signal(signal.SIGTERM)
        for proc in servers[0::2]:
            proc.wait(60)
        nodes[0].stop()
        restarted_at = status()["counts"]["ended"]
        nodes[0] = setup.gunicorn(workers=2, threads=8)
        servers[0::2] = [_graderserver(setup, workdir, nodes[0].url, echo, n) for n in (4, 5)]
        wait_for(lambda: status()["state"] in ("FINISHED", "FAILED"), 600, "the run's end")
        wall = time.monotonic() - began
        for proc in servers:
            stop(proc)
        final = status()
        checks = _checks(setup, run_id, count)
        setup.close()
    common.print_table(
        f"Runs end to end: {count} roster jobs + pre + post, 4 graderservers, 2 nodes, "
        f"node 0 restarted after {restarted_at} ended (MariaDB)",
        ["state", "wall s", "jobs per stage", "entries graded once", "stage changes"],
        [[final["state"], common.fmt(wall, 1), checks[0], checks[1], checks[2]]],
    )


def _checks(setup: Any, run_id: int, count: int) -> tuple[str, str, str]:
    from sqlalchemy import select

    from graderqueue.store import events
    from graderqueue.store.models import Event, Job

    with setup.db.reading() as session:
        jobs = session.execute(select(Job.run_role, Job.jobdata).where(Job.run_id == run_id)).all()
        stages = list(session.scalars(select(Event.message).where(Event.kind == events.RUN_STAGE)))
    roles = Counter(role for role, _ in jobs)
    users = Counter(json.loads(data).get("user") for role, data in jobs if role == "roster")
    once = len(users) == count and set(users.values()) == {1}
    return (
        f"pre {roles['pre']}, roster {roles['roster']}, post {roles['post']}",
        "yes" if once else "NO",
        str(len([s for s in stages if s.startswith(f"run #{run_id}:")])),
    )


if __name__ == "__main__":
    sys.exit("run through scripts/bench/run runs")
