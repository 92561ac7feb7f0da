"""Request ids through the real app under gunicorn, nginx and the CLI (docs/LOGS.md).

A request's id (the client's X-Request-ID when sane, else a new one) is in
the app's lines about it, in gunicorn's access line and in the answer;
every line has time, level, pid and an id, as text or as JSON lines; the
lines of one cron run share an id; secrets stay out of every line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import text

from harness.certs import ScriptError, make_pki
from harness.nginx import start_nginx
from harness.processes import run_cli, stop_process
from harness.queue import QueueSetup

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
TEXT_LINE = re.compile(
    rf"^(?P<time>{TIME}) (?P<level>[A-Z]+) \[(?P<pid>\d+)\] (?P<logger>\S+): "
    r"(?P<message>.*) request_id=(?P<request_id>\S+)$"
)
HEX_ID = re.compile(r"[0-9a-f]{16}")
SENT_ID = "lms-7f3a:poll/42"


@dataclass
class Line:
    time: str
    level: str
    pid: int
    logger: str
    message: str
    request_id: str


def parse(log_text: str, log_format: str) -> list[Line]:
    """Every record of gunicorn's logs; fails on a line that is not one (or its traceback)."""
    records: list[Line] = []
    in_traceback = False
    for raw in log_text.splitlines():
        if not raw.strip() or raw.startswith("--- "):  # the harness's file headers
            continue
        if log_format == "json":
            entry = json.loads(raw)  # every line is one JSON object
            assert set(entry) >= {"time", "level", "pid", "request_id", "logger", "message"}
            assert re.fullmatch(TIME, entry["time"]) and isinstance(entry["pid"], int), raw
            records.append(Line(**{k: entry[k] for k in Line.__dataclass_fields__}))
            continue
        found = TEXT_LINE.match(raw)
        if found is None:
            # Only the traceback of an error record may follow on lines of its own.
            assert in_traceback, f"not a log line: {raw!r}\n{log_text[-3000:]}"
            continue
        fields = found.groupdict()
        records.append(Line(**{**fields, "pid": int(fields["pid"])}))
        in_traceback = found["level"] == "ERROR"
    return records


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_request_id_is_in_the_apps_lines_the_access_line_and_the_answer(
    queue: QueueSetup, log_format: str
) -> None:
    token = queue.server_token("t-c", name="cloud")
    server = queue.gunicorn(workers=1, threads=4, GRADERQUEUE_LOG_FORMAT=log_format)
    master = server.pid
    # A fault the app logs while it answers: the table of server tokens is gone.
    with queue.db.transaction() as session:
        session.execute(text("ALTER TABLE server_tokens RENAME TO server_tokens_away"))

    # The token in the query string too: it must be in no log line.
    polled = requests.post(
        f"{server.url}/poll.php?server_token={token}",
        data={"server_token": token, "nbtasks": "0"},
        headers={"X-Request-ID": SENT_ID},
        timeout=30,
    )
    assert polled.json()["errorcode"] == 1  # "Internal error, try again later."
    assert polled.headers["X-Request-ID"] == SENT_ID
    plain = requests.get(f"{server.url}/healthz", timeout=30)
    odd = requests.get(f"{server.url}/healthz", headers={"X-Request-ID": "a b"}, timeout=30)
    made = [plain.headers["X-Request-ID"], odd.headers["X-Request-ID"]]
    assert all(HEX_ID.fullmatch(value) for value in made) and made[0] != made[1], made
    server.stop()

    logs = server.log_text()
    assert token not in logs
    lines = parse(logs, log_format)
    app = [line for line in lines if line.logger.startswith("graderqueue.")]
    access = [line for line in lines if line.logger == "gunicorn.access"]
    failed = [line for line in app if line.message == "unexpected error on /poll.php"]
    assert len(failed) == 1, logs[-3000:]
    assert failed[0].request_id == SENT_ID and failed[0].level == "ERROR"
    assert failed[0].pid != master  # the worker that answered, not the master
    polls = [line for line in access if "POST /poll.php" in line.message]
    assert [line.request_id for line in polls] == [SENT_ID], logs[-3000:]
    assert "server_token=[redacted]" in polls[0].message
    # The last two health checks: a made id each, the same as in their answers.
    health = [line.request_id for line in access if "GET /healthz" in line.message]
    assert health[-2:] == made, logs[-3000:]
    # gunicorn's own lines have the same shape, with the master's pid.
    assert any(line.pid == master and line.logger == "gunicorn.error" for line in lines)


def test_the_lines_of_one_cron_run_share_a_request_id(queue: QueueSetup) -> None:
    # Every step reading jobs fails, and says so at DEBUG (-v): several lines a run.
    with queue.db.transaction() as session:
        session.execute(text("ALTER TABLE jobs RENAME TO jobs_away"))
    env = {**queue.env, "GRADERQUEUE_LOG_FORMAT": "json"}
    runs = []
    for _ in range(2):
        result = run_cli(["cron", "-v"], env=env, check=False)
        assert result.returncode == 1, result.stderr
        entries = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
        steps = [e for e in entries if e["message"].startswith("maintenance step ")]
        assert len(steps) >= 2, result.stderr
        assert all(e["level"] == "DEBUG" and "exception" in e for e in steps)
        runs.append({e["request_id"] for e in steps})
    assert len(runs[0]) == 1 and len(runs[1]) == 1, runs
    assert runs[0] != runs[1]  # a run's id is its own


def test_each_turn_of_the_deliver_service_has_its_own_id(queue: QueueSetup, tmp_path: Any) -> None:
    # Every turn fails (no outbox table) and, with no pause between reports, says so.
    with queue.db.transaction() as session:
        session.execute(text("ALTER TABLE deliveries RENAME TO deliveries_away"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADERQUEUE_")}
    env.update({k: v for k, v in queue.env.items() if v is not None})
    env.update(
        GRADERQUEUE_LOG_FORMAT="json",
        GRADERQUEUE_FAILURE_LOG_INTERVAL_SEC="0",
        GRADERQUEUE_DELIVERY_POLL_SEC="0.1",
    )
    stderr_path = tmp_path / "deliver.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "graderqueue", "deliver"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while stderr_path.read_text().count("delivery pass failed") < 3:
            assert proc.poll() is None and time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.1)
    finally:
        stop_process(proc)
    entries = [json.loads(line) for line in stderr_path.read_text().splitlines()]
    failed = [e for e in entries if e["message"].startswith("delivery pass failed")]
    assert all(e["pid"] == proc.pid and e["level"] == "WARNING" for e in failed), entries
    assert "database error" in failed[0]["message"]  # said on the line, without -v
    ids = [e["request_id"] for e in failed]
    assert len(set(ids)) == len(ids), ids


def test_an_unknown_log_format_stops_the_cli_with_one_line(sqlite_queue: QueueSetup) -> None:
    env = {**sqlite_queue.env, "GRADERQUEUE_LOG_FORMAT": "xml"}
    result = run_cli(["cron"], env=env, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: log_format must be 'text' or 'json', not 'xml'"


def test_nginx_gives_its_request_id_to_the_app_and_logs_it(
    sqlite_queue: QueueSetup, tmp_path: Any
) -> None:
    try:
        pki = make_pki(tmp_path / "pki", n_clients=1)
    except ScriptError as exc:  # no openssl
        pytest.skip(str(exc))
    server = sqlite_queue.gunicorn(workers=1, threads=4)
    nginx = start_nginx(tmp_path, server.port, pki)
    try:
        answer = requests.get(
            nginx.url("/healthz?token=tok-Zq8Wn3"),
            headers={"X-Request-ID": "from-the-client"},
            verify=str(pki.ca_crt),
            timeout=30,
        )
    finally:
        nginx.stop()
        server.stop()
    given = answer.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", given), answer.headers  # nginx's, not the client's
    site_log = nginx.access_log.read_text()
    assert '"GET /healthz HTTP/1.1" 200 3 ' in site_log and f"request_id={given}" in site_log
    assert "tok-Zq8Wn3" not in site_log  # nginx logs the path without the query
    access = [line for line in parse(server.log_text(), "text") if "/healthz?" in line.message]
    assert [line.request_id for line in access] == [given]
