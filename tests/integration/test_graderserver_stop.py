"""SIGTERM stops an idle graderserver at once, even in the middle of a long-poll."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select

from graderqueue.store.models import Listener
from tests.integration.test_graderserver_queue import make_live, stop


@pytest.mark.queue_settings(poll_wait_sec=60, poll_recheck_sec=120)
def test_sigterm_during_a_long_poll_stops_at_once(sqlite_queue, tmp_path):
    live = make_live(sqlite_queue, tmp_path)
    proc = live.start("-c", str(live.config()), "-v")
    try:
        deadline = time.monotonic() + 30
        while sqlite_queue.scalar(select(func.count()).select_from(Listener)) < 1:
            assert time.monotonic() < deadline, "the daemon never started its poll"
            time.sleep(0.05)
        time.sleep(0.5)  # well into the poll, which would wait 60 s
        proc.send_signal(signal.SIGTERM)
        # Waiting out the poll would take about a minute.
        assert proc.wait(timeout=20) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("the daemon kept waiting on its poll after SIGTERM")
    finally:
        output = stop(proc)
    assert "Stopped waiting for a job." in output, output
