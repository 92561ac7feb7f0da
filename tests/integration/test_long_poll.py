"""A waiting poll gets a job queued through another process, through a hint, not a recheck.

The queue rechecks the database every ``poll_recheck_sec`` even without a
hint; these tests set it beyond ``poll_wait_sec``, so the poll can only get
the job if the hint from the other process arrived.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from sqlalchemy import func, select

from graderqueue.store.models import Job, JobStatus, Listener


def _wait_for_listener(queue, count: int = 1) -> None:
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


@pytest.mark.queue_settings(poll_wait_sec=30, poll_recheck_sec=120)
def test_a_poller_that_hung_up_is_not_given_the_job(sqlite_queue):
    queue = sqlite_queue
    node = queue.gunicorn(workers=1, threads=4)
    token = queue.server_token("t-c")
    platform = queue.client_for(queue.platform("p2"), url=node.url)

    # A poll that starts waiting, then its client goes away.
    address = urlsplit(node.url)
    body = urlencode({"server_token": token}).encode()
    head = (
        f"POST /poll.php HTTP/1.1\r\nHost: {address.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=10) as dead:
        dead.sendall(head + body)
        _wait_for_listener(queue)
        time.sleep(0.3)  # let its first look at the (empty) queue finish
    jobid = platform.sendjob({"hello": "world"}, tags="c")
    time.sleep(0.5)  # the hint reaches the abandoned poll first

    job = select(Job.status, Job.nb_fails).where(Job.id == jobid)
    assert [tuple(r) for r in queue.rows(job)] == [(JobStatus.QUEUED, 0)]
    live = requests.post(f"{node.url}/poll.php", data={"server_token": token}, timeout=60).json()
    assert live["errorcode"] == 0 and live["jobid"] == jobid, live
    assert [tuple(r) for r in queue.rows(job)] == [(JobStatus.SENT, 0)]


def test_a_job_claimed_as_its_poller_hangs_up_goes_back_at_once(queue):
    """The client leaves while its poll's claim is being made (a grading server
    stopping mid-poll): the job is back in the queue now, no failure counted,
    not held by nobody until its lease ends."""
    from graderqueue.dispatch import longpoll
    from graderqueue.errors import NoJob
    from graderqueue.identity.servers import Caller
    from graderqueue.store.models import Event

    token = queue.server_token("t-c")
    platform = queue.client_for(queue.platform("p2"))
    jobid = platform.sendjob({"hello": "world"}, tags="c")
    rt = queue.app.extensions["graderqueue"]
    caller = Caller("127.0.0.1", {}, token)
    with pytest.raises(NoJob):
        longpoll.poll(rt, caller, holds_nothing=False, client_gone=lambda: True)
    job = select(Job.status, Job.nb_fails, Job.sent_to).where(Job.id == jobid)
    assert [tuple(r) for r in queue.rows(job)] == [(JobStatus.QUEUED, 0, None)]
    said = queue.rows(select(Event.message).where(Event.job_id == jobid))
    assert any("left before its answer" in m for (m,) in said), said
    # A live poller gets it.
    again = longpoll.poll(rt, caller, holds_nothing=False, client_gone=lambda: False)
    assert again.id == jobid
