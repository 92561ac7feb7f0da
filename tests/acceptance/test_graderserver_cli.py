"""The `graderserver` command as an operator runs it: flags, server mode, faults.

The queue here is either absent (a closed port) or a small scripted HTTP
server that misbehaves on purpose (HTTP 502, HTML pages, "try again later"),
which the real queue cannot be made to do on demand.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[2]


def config_file(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "graderserver.toml"
    path.write_text(
        f"""
[queue]
url = "{url}"
server_token = "tok"
request_timeout = 5

[program]
command = ["cat"]

[wakeup]
host = "127.0.0.1"
port = 0

[daemon]
backoff_initial = 0.1
backoff_max = 0.5
results_retry_delay = 0.1
pid_file = "graderserver.pid"
{extra}
"""
    )
    return path


def env() -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(ROOT)}
    out.pop("GRADERSERVER_CONFIG", None)
    return out


def run(*args: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "graderserver", *args],
        env=env(),
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "graderserver", *args],
        env=env(),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent,
    )


def wait_for(predicate: Any, seconds: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def dead_url() -> str:
    """A queue URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/"


# -- plain command-line behaviour --------------------------------------------


def test_version_and_help():
    assert run("--version").stdout.startswith("graderserver ")
    help_text = run("--help").stdout
    for flag in ("-t", "-l", "-s", "-D", "-v", "-d", "-L", "-T", "--once", "-c"):
        assert flag in help_text


def test_bad_test_behaviour_is_refused(tmp_path, dead_url):
    result = run("-c", str(config_file(tmp_path, dead_url)), "-T", "7")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_config_errors_name_the_key(tmp_path, dead_url):
    path = config_file(tmp_path, dead_url, "concurrency = 0")
    result = run("-c", str(path), "--once")
    assert result.returncode == 2
    assert "daemon.concurrency" in result.stderr
    missing = run("-c", str(tmp_path / "absent.toml"), "-t")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_config_found_through_the_environment_variable(tmp_path, dead_url):
    path = config_file(tmp_path, dead_url)
    result = subprocess.run(
        [sys.executable, "-m", "graderserver", "-t"],
        env={**env(), "GRADERSERVER_CONFIG": str(path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert dead_url + "test.php" in result.stdout


def test_connection_test_against_no_queue_fails_cleanly(tmp_path, dead_url):
    result = run("-c", str(config_file(tmp_path, dead_url)), "-t")
    assert result.returncode == 1
    assert "Test failed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# -- server mode --------------------------------------------------------------


def test_server_mode_survives_a_missing_queue_and_stops_on_sigterm(tmp_path, dead_url):
    config = config_file(tmp_path, dead_url)
    pid_file = tmp_path / "graderserver.pid"
    proc = start("-c", str(config), "-s", "-f", "-v")
    try:
        wait_for(pid_file.exists, what="the pid file")
        wait_for(lambda: pid_file.read_text().strip() == str(proc.pid), what="our pid")
        time.sleep(2)  # several failed polls, with backoff
        assert proc.poll() is None, "an unreachable queue must not stop the daemon"

        second = run("-c", str(config), "-s", "-f")
        assert second.returncode == 1
        assert "already running" in second.stderr

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate(timeout=10)[0]
    assert out.count("Queue unavailable") >= 3, out
    assert "Traceback" not in out
    assert not pid_file.exists()


def test_server_mode_detaches_by_default(tmp_path, dead_url):
    config = config_file(tmp_path, dead_url, 'log_file = "daemon.log"\nlog_level = "INFO"')
    pid_file = tmp_path / "graderserver.pid"
    result = run("-c", str(config), "-s", timeout=15)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the pid file")
    pid = int(pid_file.read_text())
    try:
        assert alive(pid)
        # It left our session (and so any terminal).
        assert os.getsid(pid) != os.getsid(0)
        wait_for(lambda: "Queue unavailable" in (tmp_path / "daemon.log").read_text(), what="log")
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to exit")
    assert not pid_file.exists()


def test_wakeup_port_in_use_is_a_clear_error(tmp_path, dead_url):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        path = config_file(tmp_path, dead_url)
        path.write_text(path.read_text().replace("port = 0", f"port = {port}"))
        result = run("-c", str(path), "-l")
    assert result.returncode == 1
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


# -- a misbehaving queue -------------------------------------------------------


class FlakyQueue(http.server.ThreadingHTTPServer):
    """Answers from a script: each endpoint pops its next answer (the last repeats).

    An answer is (HTTP status, body); bodies that are dicts are sent as JSON.
    """

    def __init__(self, script: dict[str, list[tuple[int, Any]]]) -> None:
        self.script = script
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _FlakyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def next_answer(self, endpoint: str) -> tuple[int, Any]:
        with self.lock:
            answers = self.script[endpoint]
            return answers.pop(0) if len(answers) > 1 else answers[0]


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    server: FlakyQueue

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        endpoint = self.path.strip("/").removesuffix(".php")
        with self.server.lock:
            self.server.requests.append((endpoint, form))
        status, body = self.server.next_answer(endpoint)
        data = json.dumps(body).encode() if isinstance(body, dict) else str(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky_queue() -> Iterator[Any]:
    servers: list[FlakyQueue] = []

    def make(script: dict[str, list[tuple[int, Any]]]) -> FlakyQueue:
        server = FlakyQueue(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


NO_JOB = (200, {"errorcode": 1, "errormsg": "No job available."})
A_JOB = (
    200,
    {
        "errorcode": 0,
        "jobid": 42,
        "jobname": "j",
        "taskrevision": "",
        "jobdata": {"taskPath": "$ROOT_PATH/t"},
    },
)
# An old queue sent one restrict path as a bare string; the task lies inside it.
A_RESTRICTED_JOB = (
    200,
    {**A_JOB[1], "jobdata": {"taskPath": "$ROOT_PATH/t", "restrictToPaths": "$ROOT_PATH"}},
)


def test_faults_are_retried_until_the_job_is_graded(tmp_path, flaky_queue):
    queue = flaky_queue(
        {
            "poll": [(502, "Bad Gateway"), (200, "<html>oops</html>"), A_RESTRICTED_JOB, NO_JOB],
            "sendresults": [
                (200, {"errorcode": 1, "errormsg": "Database busy."}),
                (200, {"errorcode": 0, "errormsg": "Saved resultdata."}),
            ],
        }
    )
    config = config_file(tmp_path, queue.url, '[paths]\nroot = "/srv"\nrestrict = ["/mine"]')
    result = run("-c", str(config), "--once", "-v")
    assert result.returncode == 0, result.stderr
    polls = [form for endpoint, form in queue.requests if endpoint == "poll"]
    assert len(polls) == 4
    assert all(form["server_token"] == ["tok"] for form in polls)
    assert [form["nbtasks"] for form in polls] == [["0"]] * 4
    sends = [form for endpoint, form in queue.requests if endpoint == "sendresults"]
    assert len(sends) == 2, "errorcode 1 on sendresults means: send again"
    resultdata = json.loads(sends[-1]["resultdata"][0])
    assert sends[-1]["jobid"] == ["42"]
    assert resultdata["errorcode"] == 0
    assert resultdata["jobdata"]["taskPath"] == "/srv/t"
    assert resultdata["jobdata"]["restrictToPaths"] == ["/srv", "/mine"]


def test_lost_results_are_given_up_after_three_tries(tmp_path, flaky_queue):
    queue = flaky_queue({"poll": [A_JOB, NO_JOB], "sendresults": [(500, "down")]})
    result = run("-c", str(config_file(tmp_path, queue.url)), "--once", "-v")
    assert result.returncode == 0
    assert [e for e, _ in queue.requests].count("sendresults") == 3
    assert "result lost after 3 tries" in result.stderr


@pytest.mark.parametrize(("code", "word"), [(2, "errorcode 2"), (3, "authentication failed")])
def test_poll_errors_2_and_3_stop_the_daemon(tmp_path, flaky_queue, code, word):
    queue = flaky_queue({"poll": [(200, {"errorcode": code, "errormsg": "No."})]})
    result = run("-c", str(config_file(tmp_path, queue.url)), "-l")
    assert result.returncode == 1
    assert word in result.stderr


def test_nbtasks_counts_the_jobs_held(tmp_path, flaky_queue):
    marker = tmp_path / "started"
    grader = tmp_path / "grader.py"
    grader.write_text(
        "import json, sys, time\njson.load(sys.stdin)\n"
        f"open({str(marker)!r}, 'a').write('x')\ntime.sleep(1)\nprint('{{}}')\n"
    )
    second = (200, {**A_JOB[1], "jobid": 43})
    queue = flaky_queue(
        {
            "poll": [A_JOB, second, NO_JOB],
            "sendresults": [(200, {"errorcode": 0, "errormsg": "Saved resultdata."})],
        }
    )
    config = config_file(tmp_path, queue.url, "concurrency = 2")
    text = config.read_text().replace(
        'command = ["cat"]', f'command = ["{sys.executable}", "{grader}"]'
    )
    config.write_text(text)
    result = run("-c", str(config), "--once")
    assert result.returncode == 0, result.stderr
    nbtasks = [form["nbtasks"][0] for endpoint, form in queue.requests if endpoint == "poll"]
    # Two jobs run side by side: the second poll says one is held.
    assert nbtasks[:2] == ["0", "1"]
    assert marker.read_text() == "xx"


# -- health, in-process with a scripted health verdict -------------------------


class ScriptedHealth:
    """Health verdicts in order (the last repeats): the machine's real health
    cannot be made to change between two checks on demand."""

    def __init__(self, *verdicts: bool) -> None:
        self.verdicts = list(verdicts)

    def check(self) -> tuple[bool, list[str]]:
        ok = self.verdicts.pop(0) if len(self.verdicts) > 1 else self.verdicts[0]
        return ok, [] if ok else ["scripted: unhealthy"]


@pytest.mark.parametrize(
    ("verdicts", "message"),
    [
        # The first verdict is the check at start-up, before any wake-up is answered.
        ((True, True, False, True), "Server health is not okay"),  # before the job
        ((True, True, True, False, True), "Server health degraded during grading"),  # after it
    ],
)
def test_unhealthy_server_reports_errorcode_3(tmp_path, flaky_queue, verdicts, message):
    from graderserver.config import load_config
    from graderserver.daemon import Daemon

    invalid = (200, {"errorcode": 2, "errormsg": "Resultdata received invalid."})
    queue = flaky_queue({"poll": [A_JOB, NO_JOB], "sendresults": [invalid]})
    config = load_config(config_file(tmp_path, queue.url, "[health]\nrecheck_seconds = 0.1"))
    daemon = Daemon(config, once=True, health=ScriptedHealth(*verdicts))
    assert daemon.run() == 0
    sends = [form for endpoint, form in queue.requests if endpoint == "sendresults"]
    assert len(sends) == 1, "errorcode 2 to an error report is final"
    resultdata = json.loads(sends[0]["resultdata"][0])
    assert resultdata["errorcode"] == 3
    assert resultdata["errormsg"].startswith(message)


def test_unhealthy_server_takes_no_job_and_answers_wakeups_no(tmp_path, flaky_queue):
    from graderserver.config import load_config
    from graderserver.daemon import Daemon

    queue = flaky_queue({"poll": [A_JOB]})
    config = load_config(config_file(tmp_path, queue.url, "[health]\nrecheck_seconds = 0.1"))
    daemon = Daemon(config, listen=True, health=ScriptedHealth(False))
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        wait_for(lambda: daemon.listener is not None, what="the listener")
        assert daemon.listener is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(b"wakeup", daemon.listener.address)
            assert sock.recvfrom(16)[0] == b"no"
        assert queue.requests == [], "an unhealthy server does not poll"
    finally:
        daemon.request_stop()
        runner.join(10)
    assert not runner.is_alive()
