"""A job's whole trip through the protocol, in-process, on SQLite and MariaDB."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from graderqueue.store.models import Event, Job, JobStatus, Result

TASKGRADER_RESULT = {
    "errorcode": 0,
    "errormsg": "ok",
    "jobdata": {
        "executions": [
            {
                "testsReports": [
                    {
                        "execution": {"timeTakenMs": 12, "realTimeTakenMs": 20},
                        "checker": {"stdout": {"data": "100"}, "timeTakenMs": 1},
                    },
                    {
                        "execution": {"timeTakenMs": 30, "realTimeTakenMs": 35},
                        "checker": {"stdout": {"data": "100\n"}, "realTimeTakenMs": 2},
                    },
                ]
            }
        ]
    },
}


def test_sendjob_poll_sendresults_getjob(queue):
    platform = queue.platform("platform2")
    client = queue.client_for(platform)
    token = queue.server_token("t-c")
    job = {"taskPath": "/tasks/add", "extraParams": {"solutionLanguage": "c"}}

    jobid = client.sendjob(job, jobname="add-1", tags="c", priority=4, taskrevision="r7")
    queued = client.getjob(jobid)
    assert queued["origin"] == "queue"
    assert queued["data"]["status"] == "queued"
    assert queued["data"]["received_from"] == platform.id
    assert json.loads(queued["data"]["jobdata"]) == job

    polled = queue.post("/poll.php", server_token=token, nbtasks="0")
    assert polled["errorcode"] == 0
    assert polled["jobid"] == jobid
    assert polled["jobname"] == "add-1"
    assert polled["taskrevision"] == "r7"
    assert polled["jobdata"] == job

    sent = client.getjob(jobid)["data"]
    assert sent["status"] == "sent"
    assert sent["grading_start_time"] is not None

    saved = queue.post(
        "/sendresults.php",
        server_token=token,
        jobid=str(jobid),
        resultdata=json.dumps(TASKGRADER_RESULT),
    )
    assert saved == {"errorcode": 0, "errormsg": "Saved resultdata."}

    done = client.getjob(jobid)
    assert done["origin"] == "done"
    row = done["data"]
    assert row["status"] == "done"
    assert json.loads(row["resultdata"]) == TASKGRADER_RESULT
    assert row["cpu_time_ms"] == 12 + 1 + 30
    assert row["real_time_ms"] == 20 + 35 + 2
    assert row["max_real_time_ms"] == 30
    assert row["is_success"] == 1
    assert row["task_name"] == "add"
    assert row["language"] == "c"
    assert len(row["grading_end_time"]) == len("2026-01-01 00:00:00")


def test_result_from_a_server_that_does_not_hold_the_job_is_refused(queue):
    client = queue.client_for(queue.platform("p2"))
    holder, other = queue.server_token("t-c"), queue.server_token("t-c")
    jobid = client.sendjob({"x": 1}, tags="c")
    assert queue.post("/poll.php", server_token=holder)["jobid"] == jobid
    assert queue.post("/test.php", server_token=other)["errorcode"] == 0  # registers it
    before = queue.snapshot()
    answer = queue.post(
        "/sendresults.php",
        server_token=other,
        jobid=str(jobid),
        resultdata=json.dumps(TASKGRADER_RESULT),
    )
    assert answer["errorcode"] == 2
    assert answer["errormsg"] == "Task doesn't exist or server doesn't have this job assigned."
    assert queue.snapshot() == before


def test_error_result_requeues_with_one_more_failure(queue):
    client = queue.client_for(queue.platform("p2"))
    token = queue.server_token("t-c")
    jobid = client.sendjob({"x": 1}, tags="c")
    queue.post("/poll.php", server_token=token)
    answer = queue.post(
        "/sendresults.php",
        server_token=token,
        jobid=str(jobid),
        resultdata=json.dumps({"errorcode": 2, "errormsg": "disk full"}),
    )
    assert answer == {"errorcode": 2, "errormsg": "Resultdata received invalid."}
    job = queue.scalar(select(Job).where(Job.id == jobid))
    assert (job.status, job.nb_fails, job.sent_to) == (JobStatus.QUEUED, 1, None)
    assert queue.scalar(select(func.count()).select_from(Result)) == 0
    kinds = [e.kind for (e,) in queue.rows(select(Event).order_by(Event.id))]
    assert kinds == ["server_registered", "error_in_result"]
