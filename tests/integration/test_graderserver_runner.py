"""The runner against real programs: real processes, real pipes, real kills."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from graderserver.prepare import TaskPreparer
from graderserver.runner import ProcessGroups, run_job

JOB = {"taskPath": "/srv/tasks/a", "extraParams": {"solutionContent": "print(1)"}}


def program(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text("import os, subprocess, sys, time\n" + body)
    return [sys.executable, str(path)]


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie nobody reaped counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def spawn_sleeper(pid_file: Path) -> str:
    """Program text that starts a grandchild sleeping 60 s and records its pid."""
    return (
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
    )


def test_cat_grader_returns_the_job_as_result():
    result = run_job(["cat"], JOB, timeout=10, max_output_bytes=10**6)
    assert result["errorcode"] == 0
    assert result["jobdata"] == JOB


def test_timeout_kills_the_program_and_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    argv = program(tmp_path, "slow", spawn_sleeper(pid_file) + "time.sleep(60)\n")
    start = time.monotonic()
    result = run_job(argv, JOB, timeout=1.5, max_output_bytes=10**6)
    assert time.monotonic() - start < 10
    assert result["errorcode"] == 2
    assert "timeout" in result["errormsg"]
    child = int(pid_file.read_text())
    assert wait_dead(child), f"grandchild {child} survived the timeout"


def test_children_left_behind_after_a_normal_exit_are_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    argv = program(tmp_path, "leaky", spawn_sleeper(pid_file) + "print('{}')\n")
    result = run_job(argv, JOB, timeout=10, max_output_bytes=10**6)
    assert result["errorcode"] == 0
    assert wait_dead(int(pid_file.read_text()))


def test_garbage_output_is_a_fatal_error(tmp_path):
    argv = program(tmp_path, "garbage", "print('this is not JSON')\n")
    result = run_job(argv, JOB, timeout=10, max_output_bytes=10**6)
    assert result["errorcode"] == 1
    assert "this is not JSON" in result["errormsg"]
    assert "jobdata" not in result


def test_exit_code_2_is_a_temporary_error(tmp_path):
    argv = program(tmp_path, "temp", "sys.stderr.write('try later'); sys.exit(2)\n")
    result = run_job(argv, JOB, timeout=10, max_output_bytes=10**6)
    assert result["errorcode"] == 2
    assert "try later" in result["errormsg"]


def test_exit_code_1_is_a_fatal_error(tmp_path):
    argv = program(tmp_path, "fatal", "sys.stderr.write('broken task'); sys.exit(1)\n")
    result = run_job(argv, JOB, timeout=10, max_output_bytes=10**6)
    assert result["errorcode"] == 1
    assert "broken task" in result["errormsg"]


def test_output_over_the_cap_kills_the_program_at_once(tmp_path):
    pid_file = tmp_path / "child.pid"
    body = spawn_sleeper(pid_file) + "while True:\n    sys.stdout.write('x' * 65536)\n"
    argv = program(tmp_path, "chatty", body)
    start = time.monotonic()
    result = run_job(argv, JOB, timeout=60, max_output_bytes=100_000)
    assert time.monotonic() - start < 10, "must not wait for the timeout"
    assert result["errorcode"] == 2
    assert "100000 bytes" in result["errormsg"]
    assert wait_dead(int(pid_file.read_text()))


def test_a_program_that_ignores_a_large_input_still_finishes(tmp_path):
    argv = program(
        tmp_path, "deaf", "print(json.dumps({'ok': True}))\n".join(["import json\n", ""])
    )
    big = dict(JOB, blob="y" * 1_000_000)  # far beyond a pipe buffer
    result = run_job(argv, big, timeout=10, max_output_bytes=10**6)
    assert result == {
        "errorcode": 0,
        "errormsg": "Program executed successfully.\n",
        "jobdata": {"ok": True},
    }


def test_the_program_reads_the_job_on_stdin(tmp_path):
    argv = program(
        tmp_path,
        "reader",
        "import json\njob = json.load(sys.stdin)\n"
        "own = os.getpgid(0) == os.getpid()\n"
        "print(json.dumps({'seen': job['taskPath'], 'pgid_is_own': own}))\n",
    )
    result = run_job(argv, JOB, timeout=10, max_output_bytes=10**6)
    assert result["jobdata"] == {"seen": "/srv/tasks/a", "pgid_is_own": True}


def test_a_missing_program_is_a_temporary_error(tmp_path):
    result = run_job([str(tmp_path / "nope")], JOB, timeout=10, max_output_bytes=10**6)
    assert result["errorcode"] == 2
    assert "cannot start" in result["errormsg"]


def test_kill_all_stops_running_programs(tmp_path):
    groups = ProcessGroups()
    argv = program(tmp_path, "forever", "time.sleep(60)\n")
    results: list[dict] = []
    worker = threading.Thread(
        target=lambda: results.append(
            run_job(argv, JOB, timeout=60, max_output_bytes=100, groups=groups)
        )
    )
    worker.start()
    deadline = time.monotonic() + 5
    while groups.kill_all() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.join(10)
    assert not worker.is_alive()
    assert results[0]["errorcode"] == 1  # killed by a signal, not by us: fatal


# -- preparing task folders ---------------------------------------------------


@pytest.fixture
def git_task(tmp_path):
    """A task folder under git with two revisions; returns (folder, rev1, rev2)."""
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git not installed")
    folder = tmp_path / "task"
    folder.mkdir()
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args], check=True, env=env, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    revs = []
    for content in ("one", "two"):
        (folder / "statement.txt").write_text(content)
        git("add", ".")
        git("commit", "-q", "-m", content)
        revs.append(git("rev-parse", "HEAD"))
    return folder, revs[0], revs[1]


def test_prepare_command_checks_out_the_revision(git_task):
    folder, rev1, rev2 = git_task
    preparer = TaskPreparer(["git", "-C", "{task_dir}", "checkout", "-q", "{revision}"], 30)
    with preparer.checkout(str(folder), rev1) as error:
        assert error is None
        assert (folder / "statement.txt").read_text() == "one"
    with preparer.checkout(str(folder), rev2) as error:
        assert error is None
        assert (folder / "statement.txt").read_text() == "two"
    with preparer.checkout(str(folder), "no-such-revision") as error:
        assert error is not None and "no-such-revision" in error


def test_prepare_is_skipped_without_revision_and_not_repeated(tmp_path):
    log = tmp_path / "prepare.log"
    argv = program(tmp_path, "prep", f"open({str(log)!r}, 'a').write(sys.argv[1] + '\\n')\n")
    preparer = TaskPreparer([*argv, "{revision}"], 30)
    for revision in ("", "r1", "r1", "", "r2"):
        with preparer.checkout(str(tmp_path), revision) as error:
            assert error is None
    assert log.read_text().split() == ["r1", "r2"]


def test_different_revisions_of_one_folder_never_overlap(tmp_path):
    log = tmp_path / "prepare.log"
    argv = program(tmp_path, "prep", f"open({str(log)!r}, 'a').write(sys.argv[1] + '\\n')\n")
    preparer = TaskPreparer([*argv, "{revision}"], 30)
    entered = threading.Event()

    def other_revision() -> None:
        with preparer.checkout(str(tmp_path), "r2"):
            entered.set()

    with preparer.checkout(str(tmp_path), "r1"):
        thread = threading.Thread(target=other_revision)
        thread.start()
        assert not entered.wait(0.5), "r2 must wait while a job runs at r1"
        # The same revision shares the folder without waiting.
        with preparer.checkout(str(tmp_path), "r1") as error:
            assert error is None
    assert entered.wait(10)
    thread.join()
    assert log.read_text().split() == ["r1", "r2"]


def test_a_flood_on_stderr_is_drained_not_fatal(tmp_path):
    body = "for _ in range(200):\n    sys.stderr.write('e' * 65536)\nprint('{}')\n"
    result = run_job(program(tmp_path, "noisy", body), JOB, timeout=20, max_output_bytes=1000)
    assert result["errorcode"] == 0
