"""The real graderserver against the real queue: cancel, requeue, artifacts.

An admin's cancel or requeue (`graderqueue.queue.control`) reaches a job the
daemon is grading through `/jobstate`: the program and what it started die
within seconds, no result is sent, and the slot takes the next job. The
program's stdout and stderr come back as the job's artifacts.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from graderqueue.queue import control
from graderqueue.store.models import Artifact, Handout, Job, Result
from harness.queue import QueueSetup
from tests.integration.test_graderserver_queue import (
    JOB,
    Live,
    _alive,
    make_live,
    program,
    stop,
    wait_for,
)

# The daemon asks often here, so the tests wait little; the default is 2 s.
CHECKS = {"daemon": {"job_check_interval": 0.3}, "program": {"timeout": 120}}
SLEEPER = {**JOB, "extraParams": {"sleep": True}}


@pytest.fixture
def live(queue: QueueSetup, tmp_path: Path) -> Live:
    """On SQLite and on MariaDB."""
    return make_live(queue, tmp_path)


def sleeper_or_quick(live: Live, pids: Path, runs: Path, sleep_once: bool = False) -> list[str]:
    """A program that, for a job asking to sleep, starts a child, writes both
    pids to `pids` and sleeps; else answers at once. Each run adds a line to
    `runs`. `sleep_once`: only the first run sleeps."""
    return program(
        live.tmp,
        "sleeper",
        "job = json.load(sys.stdin)\n"
        f"with open({str(runs)!r}, 'a') as fh:\n    fh.write('run\\n')\n"
        f"run = len(open({str(runs)!r}).read().split())\n"
        "if job['extraParams'].get('sleep') and not (" + repr(sleep_once) + " and run > 1):\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"    open({str(pids)!r} + '.tmp', 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        f"    os.rename({str(pids)!r} + '.tmp', {str(pids)!r})\n"
        "    time.sleep(120)\n"
        "print(json.dumps({'run': run}))\n",
    )


def running_pids(pids: Path) -> list[int]:
    wait_for(pids.exists, 30, "the program to start")
    return [int(p) for p in pids.read_text().split()]


def act(live: Live, jobid: int, action: str) -> None:
    with live.queue.db.transaction() as session:
        control.act(session, jobid, action, actor="test")


def status(live: Live, jobid: int) -> str:
    return live.queue.scalar(select(Job.status).where(Job.id == jobid))


def count(live: Live, model: Any, jobid: int) -> int:
    return live.queue.scalar(select(func.count()).select_from(model).where(model.job_id == jobid))


def finish(proc: subprocess.Popen[str]) -> str:
    """Stop the daemon warmly; its output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)  # else stop() kills it
    return stop(proc)


def test_a_cancelled_job_is_killed_and_the_next_one_graded(live):
    pids, runs = live.tmp / "pids", live.tmp / "runs"
    config = live.config(sleeper_or_quick(live, pids, runs), **CHECKS)
    proc = live.start("-c", str(config), "-l", "-v")
    try:
        cancelled = live.send(SLEEPER, jobname="sleeper")
        program_pid, child_pid = running_pids(pids)
        following = live.send(jobname="following")
        assert status(live, following) == "queued", "one slot, and the sleeper holds it"
        act(live, cancelled, "cancel")
        for pid in (program_pid, child_pid):
            wait_for(lambda p=pid: not _alive(p), 15, f"process {pid} to die")
        wait_for(lambda: status(live, following) == "done", 30, "the next job")
    finally:
        out = finish(proc)
    assert "Traceback" not in out, out
    assert status(live, cancelled) == "cancelled", out
    assert count(live, Result, cancelled) == 0, "no result for a cancelled job"
    assert f"Job #{cancelled}: the queue cancelled it or took it back" in out
    assert f"Job #{cancelled}: result saved" not in out
    assert f"Job #{cancelled}: queue refused" not in out, "nothing was even sent"
    assert json.loads(live.row(following)["resultdata"])["jobdata"] == {"run": 2}


def test_a_requeued_job_is_killed_and_graded_again_once(live):
    pids, runs = live.tmp / "pids", live.tmp / "runs"
    config = live.config(sleeper_or_quick(live, pids, runs, sleep_once=True), **CHECKS)
    proc = live.start("-c", str(config), "-l", "-v")
    try:
        jobid = live.send(SLEEPER)
        program_pid, child_pid = running_pids(pids)
        act(live, jobid, "requeue")
        for pid in (program_pid, child_pid):
            wait_for(lambda p=pid: not _alive(p), 15, f"process {pid} to die")
        wait_for(lambda: status(live, jobid) == "done", 30, "the job to be graded again")
    finally:
        out = finish(proc)
    assert f"Job #{jobid}: the queue cancelled it or took it back" in out
    assert out.count(f"Job #{jobid}: result saved") == 1, out
    assert runs.read_text().split() == ["run", "run"]
    assert count(live, Handout, jobid) == 2
    row = live.row(jobid)
    assert (row["status"], row["nb_fails"]) == ("done", 0)
    assert json.loads(row["resultdata"])["jobdata"] == {"run": 2}, "the second run's result"


def test_a_job_cancelled_during_a_warm_shutdown_is_stopped_and_the_daemon_leaves(live):
    pids, runs = live.tmp / "pids", live.tmp / "runs"
    config = live.config(sleeper_or_quick(live, pids, runs), **CHECKS)
    proc = live.start("-c", str(config), "-l", "-v")
    try:
        jobid = live.send(SLEEPER)
        program_pid, child_pid = running_pids(pids)
        proc.send_signal(signal.SIGTERM)
        # A warm shutdown waits for the running job: the checks must go on.
        wait_for(lambda: status(live, jobid) == "sent", what="the job to be held")
        assert proc.poll() is None, "a warm shutdown waits for the running job"
        act(live, jobid, "cancel")
        assert proc.wait(30) == 0
    finally:
        out = stop(proc)
    assert not _alive(program_pid) and not _alive(child_pid), out
    assert count(live, Result, jobid) == 0
    assert f"Job #{jobid}: the queue cancelled it or took it back" in out
    assert "Traceback" not in out, out


def test_stdout_and_stderr_come_back_as_artifacts(live):
    chatty = program(
        live.tmp,
        "chatty",
        "job = json.load(sys.stdin)\n"
        "if job['extraParams'].get('big'):\n"
        "    print(json.dumps({'padding': 'x' * 3000}))\n"
        "    sys.stderr.write('\\u00e9' * 600)\n"  # 1200 bytes of 2-byte characters
        "else:\n"
        "    print(json.dumps({'score': 1}))\n"
        "    sys.stderr.write('careful: \\u00e9\\n')\n",
    )
    config = live.config(chatty, program={"artifact_max_bytes": 1001})
    small = live.send(jobname="small")
    big = live.send({**JOB, "extraParams": {"big": True}}, jobname="big")
    result = live.graderserver("-c", str(config), "--once", "-v")
    assert result.returncode == 0, result.stdout + result.stderr

    def artifacts(jobid: int) -> dict[str, Any]:
        rows = live.queue.rows(select(Artifact).where(Artifact.job_id == jobid))
        return {r.Artifact.name: r.Artifact for r in rows}

    kept = artifacts(small)
    assert kept["stdout"].content == '{"score": 1}\n'
    assert kept["stderr"].content == "careful: \u00e9\n"
    assert not kept["stdout"].truncated and not kept["stderr"].truncated

    kept = artifacts(big)
    assert kept["stdout"].truncated and kept["stderr"].truncated
    assert kept["stdout"].content == '{"padding": "' + "x" * 988
    # Cut between characters, not through one: no replacement character.
    assert kept["stderr"].content == "\u00e9" * 500
    # The cut is the artifact's only: the result is the program's whole output.
    assert json.loads(live.row(big)["resultdata"])["jobdata"] == {"padding": "x" * 3000}
