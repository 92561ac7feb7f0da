"""`graderqueue autoscale` through the real CLI on both databases, with --hook
driving a fake fleet: a script that keeps how many servers each type has and
logs every change it was asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, update

from graderqueue.protocol.submissions import parse
from graderqueue.queue import claim as claiming
from graderqueue.queue import complete, control, enqueue
from graderqueue.registry.view import RegistryView
from graderqueue.store import migrate
from graderqueue.store.models import AutoscaleState, Base, Job, JobStatus, Server, utcnow
from harness.processes import run_cli

FLEET = """\
import json, sys
from pathlib import Path

here = Path(sys.argv[1])
asked = json.load(sys.stdin)
state_file = here / "fleet.json"
fleet = json.loads(state_file.read_text()) if state_file.exists() else {}
with open(here / "actions.log", "a") as log:
    for name, figures in asked["types"].items():
        have, want = fleet.get(name, 0), figures["wanted"]
        if want != have:
            log.write(f"{name}: {have} -> {want}\\n")
        fleet[name] = want
state_file.write_text(json.dumps(fleet))
print("fleet:", json.dumps(fleet, sort_keys=True))
"""


def submit(queue, count, *, tag="java", prefix="j"):  # type: ignore[no-untyped-def]
    subs = [
        parse(
            {"request": "sendjob", "jobdata": {}, "tags": tag, "jobusertaskid": f"{prefix}{n}"},
            queue.settings,
        )
        for n in range(count)
    ]
    view = RegistryView(queue.db, 0)
    queued = enqueue.submit(queue.db, view, queue.settings, subs, platform_id=None, received_via="")
    return queued.job_ids


def autoscale(queue, tmp_path, *args, check=True, **settings):  # type: ignore[no-untyped-def]
    env = {
        **queue.env,
        "GRADERQUEUE_AUTOSCALE_TARGET_WAIT_SEC": "60",
        "GRADERQUEUE_AUTOSCALE_DEFAULT_JOB_SEC": "30",
        "GRADERQUEUE_AUTOSCALE_MAX_SERVERS": "8",
        **{f"GRADERQUEUE_AUTOSCALE_{k.upper()}": str(v) for k, v in settings.items()},
    }
    return run_cli(["autoscale", *args], env=env, check=check)


def fleet_hook(tmp_path: Path) -> str:
    script = tmp_path / "fleet.py"
    script.write_text(FLEET)
    return f"{sys.executable} {script} {tmp_path}"


def actions(tmp_path: Path) -> list[str]:
    log = tmp_path / "actions.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_burst_scales_up_and_the_delay_holds_the_scale_down(queue, tmp_path):
    hook = fleet_hook(tmp_path)
    first = autoscale(queue, tmp_path, "--hook", hook, scale_down_delay_sec=3600)
    assert json.loads(first.stdout)["types"]["t-java"]["wanted"] == 0
    assert "fleet:" in first.stderr and "hook: exit status 0" in first.stderr
    assert actions(tmp_path) == []

    # 8 jobs x 30 s (no history yet: the default) / 60 s target wait = 4 servers.
    submit(queue, 8)
    out = json.loads(autoscale(queue, tmp_path, "--hook", hook, scale_down_delay_sec=3600).stdout)
    java = out["types"]["t-java"]
    assert (java["waiting"], java["wanted"], java["previous"]) == (8, 4, 0)
    assert java["reason"].startswith("backlog: 0 running + 8 waiting")
    assert out["types"]["t-c"]["wanted"] == 0, "java jobs do not run on t-c"
    # A burst: 28 waiting want 14, bounded to max_servers.
    jobs = submit(queue, 20, prefix="k") + submit(queue, 8)
    autoscale(queue, tmp_path, "--hook", hook, scale_down_delay_sec=3600)
    assert actions(tmp_path) == ["t-java: 0 -> 4", "t-java: 4 -> 8"]

    # The queue empties: no scale-down before the delay...
    with queue.db.transaction() as session:
        control.act_many(session, jobs, "cancel", actor="test")
    held = json.loads(autoscale(queue, tmp_path, "--hook", hook, scale_down_delay_sec=3600).stdout)
    assert held["types"]["t-java"]["wanted"] == 8
    assert "scale-down from 8 waits" in held["types"]["t-java"]["reason"]
    assert actions(tmp_path) == ["t-java: 0 -> 4", "t-java: 4 -> 8"]
    # ... and once the last change is older than the delay, down to the minimum.
    time.sleep(1.2)
    done = json.loads(autoscale(queue, tmp_path, "--hook", hook, scale_down_delay_sec=1).stdout)
    assert done["types"]["t-java"]["wanted"] == 0
    assert actions(tmp_path) == ["t-java: 0 -> 4", "t-java: 4 -> 8", "t-java: 8 -> 0"]
    # Its memory is in the database, for every node.
    with queue.db.reading() as session:
        rows = {r.type_id: r.wanted for r in session.scalars(select(AutoscaleState))}
    assert sorted(rows.values()) == [0, 0]


def test_a_dry_run_remembers_nothing_and_runs_no_hook(queue, tmp_path):
    submit(queue, 4)
    out = json.loads(autoscale(queue, tmp_path, "--dry-run").stdout)
    assert out["dry_run"] is True
    assert out["types"]["t-java"]["wanted"] == 2
    with queue.db.reading() as session:
        assert session.scalars(select(AutoscaleState)).all() == []
    refused = autoscale(queue, tmp_path, "--dry-run", "--hook", "true", check=False)
    assert refused.returncode == 2 and "no hook" in refused.stderr


def test_a_failing_or_slow_hook_is_reported_and_stopped(queue, tmp_path):
    failing = tmp_path / "failing.sh"
    failing.write_text("#!/bin/sh\ncat >/dev/null\necho 'cloud says no' >&2\nexit 3\n")
    failing.chmod(0o755)
    result = autoscale(queue, tmp_path, "--hook", str(failing), check=False)
    assert result.returncode == 1
    assert "cloud says no" in result.stderr
    assert "error: the hook exited with status 3" in result.stderr
    assert json.loads(result.stdout)["types"], "the JSON is printed all the same"

    # A hook that hangs, with a child of its own: both are stopped.
    slow = tmp_path / "slow.sh"
    pid_file = tmp_path / "child.pid"
    slow.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pid_file}\nwait\n")
    slow.chmod(0o755)
    started = time.monotonic()
    result = autoscale(queue, tmp_path, "--hook", str(slow), "--hook-timeout", "1", check=False)
    assert result.returncode == 1
    assert "error: the hook ran over 1 s and was stopped" in result.stderr
    assert time.monotonic() - started < 45
    child = int(pid_file.read_text())
    assert _gone(child), "the hook's child outlived it"

    missing = autoscale(queue, tmp_path, "--hook", str(tmp_path / "nothing-here"), check=False)
    assert missing.returncode == 1 and "cannot run the hook" in missing.stderr


def _gone(pid: int, wait: float = 10.0) -> bool:
    """Whether ``pid`` has ended (gone, or a zombie waiting for its reaper)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_figures_come_from_the_jobs_graded_lately(queue, tmp_path):
    """Busy time per window (clipped to it, running jobs up to now), mean job duration."""
    server_id = queue.cert_server("g1", "t-c", "01", "CN=g1", max_jobs=2)
    with queue.db.reading() as session:
        type_id = session.get(Server, server_id).type_id
    ids = submit(queue, 3, tag="c")
    for _ in ids:
        with queue.db.transaction() as session:
            claiming.claim(session, server_id, type_id, max_fails=2, skip_locked=False)
    for job_id in ids[:2]:
        with queue.db.transaction() as session:
            complete.complete(session, server_id, job_id, {"errorcode": 0})
    now = utcnow()
    times = {  # job: (started, ended) seconds ago
        ids[0]: (100, 10),  # 90 s: 50 in the last minute
        ids[1]: (400, 350),  # 50 s: only in the 15-minute window
        ids[2]: (30, None),  # still running: 30 s so far
    }
    with queue.db.transaction() as session:
        for job_id, (start, end) in times.items():
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    grading_start_time=now - timedelta(seconds=start),
                    grading_end_time=None if end is None else now - timedelta(seconds=end),
                )
            )
        assert session.get(Job, ids[2]).status == JobStatus.SENT
    out = json.loads(autoscale(queue, tmp_path, "--dry-run").stdout)
    late = (utcnow() - now).total_seconds()  # the CLI ran this much later
    t = out["types"]["t-c"]
    assert (t["alive"], t["busy"], t["serving"], t["running"]) == (1, 1, 1, 1)
    assert t["slots_per_server"] == 2
    assert t["job_sec"] == approx(70, 0.01)
    assert t["usage"]["burst"] == approx(80 / 60, (late + 1) / 60 * 2)
    assert t["usage"]["medium"] == approx(120 / 300, (late + 1) / 300 * 2)
    assert t["usage"]["long"] == approx(170 / 900, (late + 1) / 900 * 2)
    # burst: 1.33 x 1.3 = 1.73 slots, 2 slots a server: 1 server.
    assert t["reason"].startswith("burst: ") and t["wanted"] == 1
    assert out["types"]["t-java"]["waiting"] == 0, "every job was claimed"


def approx(value: float, tolerance: float):  # type: ignore[no-untyped-def]
    return pytest.approx(value, abs=tolerance)


def test_several_nodes_at_once_agree(queue, tmp_path):
    """Runs from cron on several nodes at the same minute: all succeed, one memory."""
    submit(queue, 8)
    env = {
        **os.environ,
        **{k: v for k, v in queue.env.items() if v is not None},
        "GRADERQUEUE_AUTOSCALE_TARGET_WAIT_SEC": "60",
        "GRADERQUEUE_AUTOSCALE_DEFAULT_JOB_SEC": "30",
    }
    env.pop("GRADERQUEUE_CONFIG", None)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "graderqueue", "autoscale"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, [err for _, err in outputs]
    assert {json.loads(out)["types"]["t-java"]["wanted"] for out, _ in outputs} == {4}
    with queue.db.reading() as session:
        rows = session.scalars(select(AutoscaleState)).all()
    assert sorted(row.wanted for row in rows) == [0, 4]


def test_migration_0006_goes_down_and_up(queue):
    cfg = migrate.alembic_config()
    with queue.db.engine.connect() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0005")
        connection.commit()
    assert "autoscale_state" not in inspect(queue.db.engine).get_table_names()
    migrate.upgrade(queue.db)
    with queue.db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
