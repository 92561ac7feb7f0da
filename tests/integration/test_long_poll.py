"""A waiting poll gets a job queued through another process, through a hint, not a recheck.

The queue rechecks the database every ``poll_recheck_sec`` even without a
hint; these tests set it beyond ``poll_wait_sec``, so the poll can only get
the job if the hint from the other process arrived.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from graderqueue.models import Listener


def _wait_for_listener(queue, count: int = 1) -> None:
    from sqlalchemy import func, select

    deadline = time.monotonic() + 20
    while queue.scalar(select(func.count()).select_from(Listener)) < count:
        assert time.monotonic() < deadline, "the poll never started waiting"
        time.sleep(0.05)


@pytest.mark.queue_settings(poll_wait_sec=30, poll_recheck_sec=120)
def test_job_queued_on_another_node_reaches_a_waiting_poller(queue):
    node_a = queue.gunicorn(workers=1, threads=4)
    node_b = queue.gunicorn(workers=1, threads=4)
    token = queue.server_token("t-c")
    platform = queue.client_for(queue.platform("p2"), url=node_b.url)

    answers: list[dict] = []
    poller = threading.Thread(
        target=lambda: answers.append(
            requests.post(f"{node_a.url}/poll.php", data={"server_token": token}, timeout=60).json()
        )
    )
    poller.start()
    _wait_for_listener(queue)
    time.sleep(0.3)  # let the poll's first look at the (empty) queue finish
    jobid = platform.sendjob({"hello": "world"}, tags="c")
    poller.join(timeout=60)

    assert answers and answers[0]["errorcode"] == 0, answers
    assert answers[0]["jobid"] == jobid


@pytest.mark.queue_settings(poll_wait_sec=3, poll_recheck_sec=120)
def test_a_job_for_another_type_does_not_end_the_wait(sqlite_queue):
    queue = sqlite_queue
    node = queue.gunicorn(workers=2, threads=4)
    token = queue.server_token("t-java")  # handles c and java
    platform = queue.client_for(queue.platform("p2"), url=node.url)
    queue.server_type("t-gpu", ["gpu"])

    answers: list[dict] = []
    poller = threading.Thread(
        target=lambda: answers.append(
            requests.post(f"{node.url}/poll.php", data={"server_token": token}, timeout=60).json()
        )
    )
    poller.start()
    _wait_for_listener(queue)
    platform.sendjob({"needs": "gpu"}, tags="gpu")
    poller.join(timeout=60)
    assert answers == [{"errorcode": 1, "errormsg": "No job available."}]
