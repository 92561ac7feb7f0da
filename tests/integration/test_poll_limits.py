"""One grading server can neither exceed its job limit nor hold every thread.

Found by a red team: a server registered with max jobs 1 opened 4 long-polls
at once, then 4 jobs were queued, and it got all 4; 70 parallel polls from
one server made a platform's request wait 17 s. And under chaos, a server
whose result was saved but whose answer was lost was told, when it sent the
same result again, that the job was not its own.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from sqlalchemy import func, select

from graderqueue.dispatch.pollslots import PollSlots
from graderqueue.store.models import Job, JobStatus, Listener


def _wait_for_listeners(queue, count: int) -> None:
    deadline = time.monotonic() + 20
    while queue.scalar(select(func.count()).select_from(Listener)) < count:
        assert time.monotonic() < deadline, "the polls never started waiting"
        time.sleep(0.05)


def _poll_in_background(url: str, token: str, answers: list) -> threading.Thread:
    def run() -> None:
        try:
            reply = requests.post(f"{url}/poll.php", data={"server_token": token}, timeout=120)
        except requests.RequestException as exc:  # the test stopped the server
            answers.append({"stopped": str(exc)})
        else:
            answers.append(reply.json())

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.queue_settings(poll_wait_sec=20, poll_recheck_sec=120)
def test_max_jobs_holds_under_parallel_polls(queue):
    node = queue.gunicorn(workers=2, threads=8)
    token = queue.server_token("t-c", max_jobs=1)
    platform = queue.client_for(queue.platform("p"), url=node.url)

    answers: list[dict] = []
    pollers = [_poll_in_background(node.url, token, answers) for _ in range(4)]
    _wait_for_listeners(queue, 1)
    time.sleep(1.0)  # let every poll finish its first (empty) claim and wait
    jobids = [platform.sendjob({"n": n}, tags="c") for n in range(4)]
    for poller in pollers:
        poller.join(timeout=60)

    handed = [a for a in answers if a["errorcode"] == 0]
    assert len(answers) == 4
    assert len(handed) == 1, answers
    assert handed[0]["jobid"] in jobids
    refused = [a for a in answers if a["errorcode"] != 0]
    assert all(a["errorcode"] == 1 for a in refused), refused
    sent = queue.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.SENT))
    assert sent == 1


@pytest.mark.queue_settings(poll_wait_sec=90, poll_recheck_sec=120, max_polls_per_server=2)
def test_polls_beyond_the_per_server_bound_are_answered_at_once(sqlite_queue):
    queue = sqlite_queue
    node = queue.gunicorn(workers=1, threads=16)
    token = queue.server_token("t-c", max_jobs=10)

    waiting: list[dict] = []
    pollers = [_poll_in_background(node.url, token, waiting) for _ in range(2)]
    _wait_for_listeners(queue, 1)
    time.sleep(1.0)
    # Answered at once: waiting out poll_wait_sec (90 s) would time this out.
    extra = requests.post(f"{node.url}/poll.php", data={"server_token": token}, timeout=30)
    assert extra.json() == {"errorcode": 1, "errormsg": "No job available."}
    assert waiting == [], "the two polls within the bound are still waiting"
    node.stop()
    for poller in pollers:
        poller.join(timeout=60)


@pytest.mark.queue_settings(
    poll_wait_sec=90, poll_recheck_sec=120, max_polls_per_server=100, max_waiting_polls=4
)
def test_many_polls_from_one_server_leave_threads_for_platforms_and_results(sqlite_queue):
    queue = sqlite_queue
    node = queue.gunicorn(workers=1, threads=6)
    token = queue.server_token("t-c", max_jobs=10)
    platform = queue.client_for(queue.platform("p"), url=node.url)
    jobid = platform.sendjob({"n": 1}, tags="c")
    job = requests.post(f"{node.url}/poll.php", data={"server_token": token}, timeout=30).json()
    assert job["jobid"] == jobid

    # 20 polls at once: 4 may wait, the others are answered at once (had they
    # all waited, they would hold the 6 threads for poll_wait_sec, 90 s).
    answers: list[dict] = []
    flood = [_poll_in_background(node.url, token, answers) for _ in range(20)]
    deadline = time.monotonic() + 60
    while len(answers) < 16:
        assert time.monotonic() < deadline, f"only {len(answers)} polls were answered"
        time.sleep(0.05)
    assert all(a == {"errorcode": 1, "errormsg": "No job available."} for a in answers)
    # The platform and the result get through while 4 polls wait.
    assert platform.test().startswith("Connected as platform")
    result = {"errorcode": 0, "errormsg": "ok", "jobdata": {"x": 1}}
    saved = requests.post(
        f"{node.url}/sendresults.php",
        data={"server_token": token, "jobid": jobid, "resultdata": json.dumps(result)},
        timeout=30,
    ).json()
    assert saved["errorcode"] == 0, saved
    node.stop()
    for poller in flood:
        poller.join(timeout=60)


def test_poll_slots_bound_per_server_and_in_all():
    slots = PollSlots(per_server=2, total=3)
    with slots.hold(1) as a, slots.hold(1) as b, slots.hold(1) as c:
        assert (a, b, c) == (True, True, False)
        with slots.hold(2) as d, slots.hold(3) as e:
            assert (d, e) == (True, False)
    assert slots.waiting() == 0 and slots.waiting(1) == 0


def test_the_same_result_again_from_its_server_is_saved_once(queue):
    node = queue.gunicorn(workers=1, threads=4)
    token = queue.server_token("t-c")
    other = queue.server_token("t-c", name="other")
    platform = queue.client_for(queue.platform("p", return_url=""), url=node.url)
    jobid = platform.sendjob({"n": 1}, tags="c")
    assert requests.post(f"{node.url}/poll.php", data={"server_token": token}).json()["jobid"]

    result = {"errorcode": 0, "errormsg": "ok", "jobdata": {"score": 100}}
    form = {"server_token": token, "jobid": jobid, "resultdata": json.dumps(result)}
    first = requests.post(f"{node.url}/sendresults.php", data=form).json()
    snapshot = queue.snapshot()
    # Its answer was lost: the server sends the same result again, in another key order.
    again = dict(form, resultdata=json.dumps(dict(reversed(result.items()))))
    assert (
        requests.post(f"{node.url}/sendresults.php", data=again).json()
        == first
        == {
            "errorcode": 0,
            "errormsg": "Saved resultdata.",
        }
    )
    assert queue.snapshot() == snapshot

    different = dict(form, resultdata=json.dumps({**result, "errormsg": "other"}))
    answer = requests.post(f"{node.url}/sendresults.php", data=different).json()
    assert answer["errorcode"] == 2
    foreign = dict(form, server_token=other)
    assert requests.post(f"{node.url}/sendresults.php", data=foreign).json()["errorcode"] == 2
    assert queue.snapshot() == snapshot


@pytest.mark.queue_settings(poll_wait_sec=90, poll_recheck_sec=120, max_polls_per_server=100)
def test_the_example_gunicorn_config_keeps_a_quarter_of_the_threads_from_pollers(sqlite_queue):
    """examples/gunicorn.conf.py sets max_waiting_polls to 5/8 of --threads (here 8 -> 5)
    and events_max_streams to 1/8 (1): a quarter stays free for platforms."""
    queue = sqlite_queue
    node = queue.gunicorn(workers=1, threads=8)
    token = queue.server_token("t-c", max_jobs=10)
    answers: list[dict] = []
    polls = [_poll_in_background(node.url, token, answers) for _ in range(7)]
    deadline = time.monotonic() + 60
    while len(answers) < 2:
        assert time.monotonic() < deadline, f"{len(answers)} polls answered; 5 may wait"
        time.sleep(0.05)
    assert answers == [{"errorcode": 1, "errormsg": "No job available."}] * 2
    platform = queue.client_for(queue.platform("p"), url=node.url)
    assert platform.test().startswith("Connected as platform")
    node.stop()
    for poll in polls:
        poll.join(timeout=60)
