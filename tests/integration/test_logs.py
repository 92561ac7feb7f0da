"""Log lines of the app inside real gunicorn workers carry a UTC time, the level and the pid."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import text

LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) WARNING \[(\d+)\] graderqueue\.delivery\.worker: "
    r"delivery pass failed; trying again shortly",
    re.MULTILINE,
)


@pytest.mark.queue_settings(delivery_poll_sec=0.2)
def test_a_warning_inside_a_gunicorn_worker_has_time_level_and_pid(sqlite_queue):
    server = sqlite_queue.gunicorn(workers=1, threads=2)
    # The database fails under the running app: every delivery pass of the
    # worker's delivery thread fails and says so (once, then once a minute).
    with sqlite_queue.db.transaction() as session:
        session.execute(text("DROP TABLE delivery_attempts"))
        session.execute(text("DROP TABLE deliveries"))
    deadline = time.monotonic() + 60
    while not LINE.search(server.log_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    logs = server.log_text()
    found = LINE.search(logs)
    assert found, logs
    pid = found.group(2)
    assert f"Booting worker with pid: {pid}" in logs  # a worker's pid, not the master's
    assert "no such table" in logs  # the traceback is still there for the web app
