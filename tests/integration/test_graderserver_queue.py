"""The real graderserver command against the real queue under gunicorn.

A platform client sends jobs over HTTP, `python -m graderserver` grades them
with real programs, and the test reads the outcome back as the platform (or
the admin, from the database) would see it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from graderqueue.store.models import Event, Server
from harness.graderserver_config import toml_text
from harness.processes import die_with_parent, run_cli
from harness.queue import QueueSetup

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(ROOT), "GRADERSERVER_CONFIG": None}
JOB = {"taskPath": "$ROOT_PATH/tasks/add", "extraParams": {"solutionContent": "1+1"}}


@dataclass
class Live:
    queue: QueueSetup
    url: str
    token: str
    client: Any
    tmp: Path

    def config(self, command: list[str] | None = None, **sections: dict[str, Any]) -> Path:
        """A graderserver config for this queue; keyword args add or replace sections."""
        content: dict[str, dict[str, Any]] = {
            "queue": {"url": self.url + "/", "server_token": self.token, "request_timeout": 30},
            "program": {"command": command or ["cat"], "timeout": 20},
            "paths": {"root": "/srv/grading"},
            "wakeup": {"host": "127.0.0.1", "port": 0},
            "daemon": {"backoff_initial": 0.2, "backoff_max": 1, "results_retry_delay": 0.2},
        }
        for name, values in sections.items():
            content[name] = {**content.get(name, {}), **values}
        path = self.tmp / "graderserver.toml"
        path.write_text(toml_text(content))
        return path

    def graderserver(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_cli(
            list(args), env=ENV, cwd=ROOT, check=False, timeout=timeout, module="graderserver"
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "graderserver", *args],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=die_with_parent,
        )

    def row(self, jobid: int) -> dict[str, Any]:
        return self.client.getjob(jobid)["data"]

    def send(self, job: dict[str, Any] = JOB, **kw: Any) -> int:
        return self.client.sendjob(job, tags="c", **kw)


def program(tmp: Path, name: str, body: str) -> list[str]:
    path = tmp / f"{name}.py"
    path.write_text("import json, os, subprocess, sys, time\n" + body)
    return [sys.executable, str(path)]


def wait_for(predicate: Any, seconds: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str]) -> str:
    """Make sure a started graderserver is gone; return its output."""
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=10)
    return out


def make_live(queue: QueueSetup, tmp_path: Path) -> Live:
    server = queue.gunicorn(workers=2, threads=8)
    platform = queue.platform("grading-tests")
    return Live(
        queue=queue,
        url=server.url,
        token=queue.server_token("t-c"),
        client=queue.client_for(platform, url=server.url),
        tmp=tmp_path,
    )


@pytest.fixture
def live(sqlite_queue: QueueSetup, tmp_path: Path) -> Live:
    return make_live(sqlite_queue, tmp_path)


@pytest.fixture
def live_any(queue: QueueSetup, tmp_path: Path) -> Live:
    """On SQLite and on MariaDB."""
    return make_live(queue, tmp_path)


# -- connection test ----------------------------------------------------------


def test_connection_test_with_a_token(live):
    result = live.graderserver("-c", str(live.config()), "-t")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Test successful" in result.stdout

    live.token = "not-a-registered-token"
    result = live.graderserver("-c", str(live.config()), "-t")
    assert result.returncode == 1
    assert "Test failed" in result.stdout and "(#3)" in result.stdout


# -- grading ------------------------------------------------------------------


def test_once_grades_every_waiting_job(live_any):
    live = live_any
    jobids = [live.send(jobname=f"job-{i}") for i in range(3)]
    result = live.graderserver("-c", str(live.config()), "--once", "-v")
    assert result.returncode == 0, result.stderr
    for jobid in jobids:
        row = live.row(jobid)
        assert row["status"] == "done", row
        resultdata = json.loads(row["resultdata"])
        assert resultdata["errorcode"] == 0
        # cat hands back the job exactly as the program received it.
        graded = resultdata["jobdata"]
        assert graded["rootPath"] == "/srv/grading"
        assert graded["taskPath"] == "/srv/grading/tasks/add"
        assert graded["extraParams"] == JOB["extraParams"]


def test_program_errors_as_the_queue_sees_them(live):
    fatal = program(live.tmp, "fatal", "sys.stderr.write('broken'); sys.exit(1)\n")
    jobid = live.send()
    assert live.graderserver("-c", str(live.config(fatal)), "--once").returncode == 0
    row = live.row(jobid)
    assert row["status"] == "done"
    assert json.loads(row["resultdata"])["errorcode"] == 1
    assert "broken" in json.loads(row["resultdata"])["errormsg"]

    temporary = program(live.tmp, "temporary", "sys.exit(2)\n")
    jobid = live.send()
    assert live.graderserver("-c", str(live.config(temporary)), "--once").returncode == 0
    row = live.row(jobid)
    # Tried until max_fails (2), then no longer offered.
    assert (row["status"], row["nb_fails"]) == ("queued", 2)


@pytest.mark.parametrize(
    ("behaviour", "status", "nb_fails", "errorcode"),
    [
        ("1", "queued", 2, None),  # dropped; our next nbtasks=0 poll returns it
        ("3", "done", 0, 1),  # reported fatal
        ("4", "queued", 2, None),  # reported temporary: requeued, failure counted
        ("5", "queued", 2, None),  # results without resultdata are refused
        ("6", "done", 0, 0),  # cat instead of the (failing) program
    ],
)
def test_test_behaviours_seen_from_the_queue(live, behaviour, status, nb_fails, errorcode):
    jobid = live.send()
    config = live.config(["false"])
    result = live.graderserver("-c", str(config), "--once", "-T", behaviour)
    assert result.returncode == 0, result.stderr
    row = live.row(jobid)
    assert (row["status"], row["nb_fails"]) == (status, nb_fails), row
    if errorcode is not None:
        assert json.loads(row["resultdata"])["errorcode"] == errorcode


# -- shutdown -----------------------------------------------------------------


def test_sigterm_while_grading_loses_nothing(live):
    marker = live.tmp / "started"
    slow = program(
        live.tmp,
        "slow",
        f"job = json.load(sys.stdin)\nopen({str(marker)!r}, 'w').close()\n"
        "time.sleep(2)\nprint(json.dumps({'graded': job['taskPath']}))\n",
    )
    proc = live.start("-c", str(live.config(slow)), "-l", "-v")
    try:
        jobid = live.send()
        wait_for(marker.exists, what="the program to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        out = stop(proc)
    row = live.row(jobid)
    assert row["status"] == "done", out
    assert json.loads(row["resultdata"])["jobdata"] == {"graded": "/srv/grading/tasks/add"}


def test_second_signal_kills_the_program_and_the_job_comes_back(live):
    pid_file = live.tmp / "grandchild.pid"
    stuck = program(
        live.tmp,
        "stuck",
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\ntime.sleep(60)\n",
    )
    proc = live.start("-c", str(live.config(stuck, program={"timeout": 120})), "-l")
    try:
        jobid = live.send()
        wait_for(pid_file.exists, what="the program to start")
        wait_for(lambda: pid_file.read_text() != "", what="the grandchild's pid")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None, "a warm shutdown waits for the running job"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        stop(proc)
    grandchild = int(pid_file.read_text())
    wait_for(lambda: not _alive(grandchild), 5, "the grandchild to die")
    assert live.row(jobid)["status"] == "sent"
    # Restarted, the server polls with nbtasks=0: the queue takes the job back
    # (one failure counted) and hands it out again.
    result = live.graderserver("-c", str(live.config()), "--once")
    assert result.returncode == 0
    row = live.row(jobid)
    assert (row["status"], row["nb_fails"]) == ("done", 1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- wake-ups -----------------------------------------------------------------


def _point_wakeups_at(live: Live, port: int, secret: str) -> int:
    """Aim the newest registered server's wake-ups at our listener; returns its id."""
    with live.queue.db.transaction() as session:
        server_id = session.scalar(select(Server.id).order_by(Server.id.desc()).limit(1))
        session.execute(
            update(Server)
            .where(Server.id == server_id)
            .values(wakeup_url=f"udp://127.0.0.1:{port}", wakeup_secret=secret, wakeup_fails=0)
        )
    return server_id


@pytest.fixture
def udp_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


def _udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.mark.queue_settings(wakeup_recent_sec=0)
@pytest.mark.parametrize("daemon_secret", ["s3cret", "wrong"])
def test_signed_wakeups_from_the_queue(live, udp_port, daemon_secret):
    # The queue wakes only servers that are not already long-polling: keep the
    # daemon busy with one job (of two it may hold) while a second one arrives.
    live.token = live.queue.server_token("t-c", max_jobs=2)
    started, release = live.tmp / "started", live.tmp / "release"
    waiting = program(
        live.tmp,
        "waiting",
        f"json.load(sys.stdin)\nopen({str(started)!r}, 'w').close()\n"
        f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.05)\nprint('{{}}')\n",
    )
    config = live.config(waiting, wakeup={"port": udp_port, "secret": daemon_secret})
    assert live.graderserver("-c", str(config), "-t").returncode == 0  # registers
    server_id = _point_wakeups_at(live, udp_port, "s3cret")

    def server() -> Server:
        with live.queue.db.transaction() as session:
            row = session.get(Server, server_id)
            session.expunge(row)
            return row

    proc = live.start("-c", str(config), "-l", "-v")
    try:
        # Jobs sent before the daemon listens would get a failed wake-up.
        wait_for(lambda: _udp_port_taken(udp_port), what="the daemon to listen")
        first = live.send(jobname="first")
        wait_for(started.exists, what="the first job to start")
        second = live.send(jobname="second")
        wait_for(lambda: server().last_wakeup_time is not None, what="a wake-up attempt")
        release.touch()
        for jobid in (first, second):
            wait_for(lambda j=jobid: live.row(j)["status"] == "done", what=f"job {jobid}")
    finally:
        out = stop(proc)
    # (A poll resets wakeup_fails, so the queue's event log is what tells.)
    failed = live.queue.rows(
        select(Event).where(Event.kind == "wakeup_failed", Event.server_id == server_id)
    )
    if daemon_secret == "s3cret":
        assert failed == [], out
        assert "Wake-up from 127.0.0.1: answered ok" in out
    else:
        # A wake-up signed with another secret is ignored: the queue hears nothing.
        assert failed, out
        assert "Ignored an invalid wake-up" in out
        assert "answered ok" not in out


# -- client certificates through nginx ---------------------------------------


@pytest.mark.queue_settings(trusted_proxies=["127.0.0.1"])
def test_connection_test_with_a_client_certificate(sqlite_queue, tmp_path):
    from harness.certs import ScriptError, make_pki
    from harness.nginx import start_nginx

    try:
        pki = make_pki(tmp_path / "pki", n_clients=1)
    except ScriptError as exc:
        pytest.skip(str(exc))
    server = sqlite_queue.gunicorn(workers=1, threads=4)
    cert = pki.client("grader-1")
    sqlite_queue.cert_server("grader-1", "t-c", cert.serial, cert.issuer_dn)
    nginx = start_nginx(tmp_path, int(server.url.rsplit(":", 1)[1]), pki)
    try:
        config = tmp_path / "graderserver.toml"
        config.write_text(
            toml_text(
                {
                    "queue": {
                        "url": nginx.base_url,
                        "cert": str(cert.crt),
                        "key": str(cert.key),
                        "ca": str(pki.ca_crt),
                    },
                    "program": {"command": ["cat"]},
                }
            )
        )
        run = run_cli(
            ["-c", str(config), "-t"], env=ENV, cwd=ROOT, check=False, module="graderserver"
        )
        assert run.returncode == 0, run.stdout + run.stderr + nginx.logs()
        assert "Test successful" in run.stdout

        # The same request without the certificate is refused by the queue.
        config.write_text(
            toml_text(
                {
                    "queue": {"url": nginx.base_url, "server_token": "x", "ca": str(pki.ca_crt)},
                    "program": {"command": ["cat"]},
                }
            )
        )
        run = run_cli(
            ["-c", str(config), "-t"], env=ENV, cwd=ROOT, check=False, module="graderserver"
        )
        assert run.returncode == 1 and "(#3)" in run.stdout
    finally:
        nginx.stop()
