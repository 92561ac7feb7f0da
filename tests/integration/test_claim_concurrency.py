"""Many grading servers polling a real gunicorn at once: no job twice, none lost."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import requests
from sqlalchemy import func, select

from graderqueue.store.models import Job, JobStatus

JOBS = 150
POLLERS = 10


@pytest.mark.queue_settings(poll_wait_sec=1)
def test_many_pollers_many_jobs(queue):
    platform = queue.client_for(queue.platform("p2"))
    tokens = [queue.server_token("t-c", max_jobs=0) for _ in range(POLLERS)]
    app = queue.gunicorn(workers=3, threads=16)
    # Half the jobs wait before the pollers start, half arrive while they poll.
    for i in range(JOBS // 2):
        platform.sendjob({"n": i}, tags="c", jobusertaskid=f"j{i}")

    claims: list[tuple[int, int]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def poller(index: int) -> None:
        http = requests.Session()
        idle = 0
        while idle < 2:
            answer = http.post(
                f"{app.url}/poll.php", data={"server_token": tokens[index]}, timeout=30
            ).json()
            if answer["errorcode"] == 1:
                idle += 1
                continue
            if answer["errorcode"] != 0:
                errors.append(json.dumps(answer))
                return
            idle = 0
            with lock:
                claims.append((index, answer["jobid"]))
            done = http.post(
                f"{app.url}/sendresults.php",
                data={
                    "server_token": tokens[index],
                    "jobid": answer["jobid"],
                    "resultdata": json.dumps({"errorcode": 0, "jobdata": {"n": answer["jobid"]}}),
                },
                timeout=30,
            ).json()
            if done["errorcode"] != 0:
                errors.append(json.dumps(done))

    threads = [threading.Thread(target=poller, args=(i,)) for i in range(POLLERS)]
    for thread in threads:
        thread.start()
    remote = queue.client_for(queue_platform := queue.platform("p3"), url=app.url)
    for i in range(JOBS // 2, JOBS):
        remote.sendjob({"n": i}, tags="c", jobusertaskid=f"j{i}")
    for thread in threads:
        thread.join(timeout=120)
    assert queue_platform.name == "p3"

    assert errors == []
    per_job = Counter(jobid for _, jobid in claims)
    assert len(per_job) == JOBS, "every job was handed out"
    assert max(per_job.values()) == 1, "no job was handed out twice"
    assert len({server for server, _ in claims}) > 1, "the work was shared"
    assert (
        queue.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.DONE))
        == JOBS
    )
