"""Acceptance: grading servers (/poll.php, /sendresults.php, /test.php) as the
original graderserver speaks to them, with jobs from an independent platform.

Written from PROTOCOL.md only. Grading servers are plain ``requests`` form
clients with server tokens; platforms make their tokens with joserfc; the
queue is a real gunicorn on SQLite and on MariaDB. Tests share one queue per
backend, so each one routes its jobs through a tag and a server type of its
own: no test's servers ever see another test's jobs.
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from joserfc import jwe, jws
from joserfc.jwk import RSAKey
from sqlalchemy import text

from harness.foreign_platform import (
    ForeignPlatform,
    ServedQueue,
    queue_public_pem,
    served_queue_for,
)

TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
NO_JOB = {"errorcode": 1, "errormsg": "No job available."}
TOO_MANY = {"errorcode": 1, "errormsg": "Server already accepted too many jobs."}
SAVED = {"errorcode": 0, "errormsg": "Saved resultdata."}
INVALID = {"errorcode": 2, "errormsg": "Resultdata received invalid."}
NOT_YOURS = {
    "errorcode": 2,
    "errormsg": "Task doesn't exist or server doesn't have this job assigned.",
}
TASKGRADER_OUTPUT = {
    "executions": [
        {
            "testsReports": [
                {
                    "execution": {"timeTakenMs": 12, "realTimeTakenMs": 20},
                    "checker": {"stdout": {"data": "100"}},
                }
            ]
        }
    ]
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def served(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_queue_for(request, tmp_path_factory, poll_wait_sec=1) as served:
        yield served


@pytest.fixture(scope="module")
def platform(served: ServedQueue) -> ForeignPlatform:
    return served.platform()


@pytest.fixture
def lane(served: ServedQueue) -> tuple[str, str]:
    """(tag, server type) of this test alone."""
    return served.isolated_type()


def job_for(request_name: str, n: int = 0) -> dict:
    return {"taskPath": f"/tasks/{request_name}", "extraParams": {"n": n}}


def result(errorcode: Any = 0, jobdata: Any = None) -> dict:
    answer: dict[str, Any] = {"errormsg": "from the test", "jobdata": jobdata or {}}
    if errorcode is not None:
        answer["errorcode"] = errorcode
    return answer


# -- test.php and the whole trip -----------------------------------------------


@pytest.mark.parametrize("suffix", [".php", ""], ids=["php", "clean"])
def test_test_php(served: ServedQueue, lane, suffix: str):
    answer = served.server(lane[1], suffix=suffix).test()
    assert answer["errorcode"] == 0, answer


@pytest.mark.parametrize("suffix", [".php", ""], ids=["php", "clean"])
def test_a_job_from_a_foreign_platform_graded_by_a_form_server(
    served: ServedQueue, platform: ForeignPlatform, lane, suffix: str
):
    """Issue 2's "done when": queue with any JOSE library, claim and report with
    the original's form protocol, read back with getjob."""
    tag, type_name = lane
    server = served.server(type_name, suffix=suffix)
    job = job_for("trip")
    jobid = platform.queue_job(
        json.dumps(job), jobname="trip-1", tags=tag, taskrevision="rev-9", priority=1
    )

    polled = server.claim(nbtasks="0")
    assert polled["jobid"] == jobid
    assert type(polled["jobid"]) is int
    assert polled["jobname"] == "trip-1"
    assert polled["taskrevision"] == "rev-9"
    assert polled["jobdata"] == job  # an object here, not a string

    sent = platform.getjob(jobid)
    assert sent["origin"] == "queue"
    row = sent["data"]
    assert row["status"] == "sent"
    assert type(row["sent_to"]) is int
    assert TIME.match(row["grading_start_time"]), row

    resultdata = result(0, TASKGRADER_OUTPUT)
    assert server.sendresults(str(jobid), resultdata) == SAVED

    done = platform.getjob(jobid)
    assert done["errorcode"] == 0
    assert done["errormsg"] == "Success"
    assert done["origin"] == "done"
    row = done["data"]
    assert row["id"] == jobid
    assert row["status"] == "done"
    assert row["name"] == "trip-1"
    assert row["received_from"] == platform.id
    assert isinstance(row["jobdata"], str)
    assert json.loads(row["jobdata"]) == job
    assert isinstance(row["resultdata"], str)
    assert json.loads(row["resultdata"]) == resultdata
    for number in ("id", "job_repeats", "priority", "timeout_sec", "nb_fails", "sent_to"):
        assert type(row[number]) is int, (number, row[number])
    for moment in ("received_time", "grading_start_time", "grading_end_time"):
        assert TIME.match(row[moment]), (moment, row[moment])


def test_no_job_available(served: ServedQueue, lane):
    server = served.server(lane[1])
    assert server.poll(nbtasks="0") == NO_JOB
    assert server.poll() == NO_JOB


# -- which job, to whom -----------------------------------------------------------


def test_highest_priority_first_then_oldest(served: ServedQueue, platform, lane):
    tag, type_name = lane
    ids = {
        name: platform.queue_job(job_for(name), jobname=name, priority=priority, tags=tag)
        for name, priority in [("a", 0), ("b", 5), ("c", 5), ("d", 1), ("e", 0)]
    }
    server = served.server(type_name, max_jobs=10)
    claimed = [server.claim()["jobid"] for _ in ids]
    assert claimed == [ids["b"], ids["c"], ids["d"], ids["a"], ids["e"]]
    assert server.poll() == NO_JOB


def test_a_job_goes_only_to_types_that_handle_all_its_tags(served: ServedQueue, platform):
    x, y = served.tags(2)
    only_x = served.server(served.server_type([x]), max_jobs=5)
    both = served.server(served.server_type([x, y]), max_jobs=5)
    needs_both = platform.queue_job(job_for("xy"), tags=f"{x},{y}")
    assert only_x.poll() == NO_JOB
    assert both.claim()["jobid"] == needs_both
    needs_x = platform.queue_job(job_for("x"), tags=x)
    assert only_x.claim()["jobid"] == needs_x


def test_a_forced_tag_routes_the_job(served: ServedQueue):
    x, forced_tag = served.tags(2)
    forced = served.platform(force_tag=forced_tag)
    without = served.server(served.server_type([x]))
    with_forced = served.server(served.server_type([x, forced_tag]))
    jobid = forced.queue_job(job_for("forced"), tags=x)
    assert without.poll() == NO_JOB
    assert with_forced.claim()["jobid"] == jobid


def test_no_two_servers_get_the_same_job(served: ServedQueue, platform, lane):
    tag, type_name = lane
    jobid = platform.queue_job(job_for("exclusive"), tags=tag)
    servers = [served.server(type_name) for _ in range(6)]
    for server in servers:
        assert server.test()["errorcode"] == 0  # registered before the race
    with ThreadPoolExecutor(len(servers)) as pool:
        answers = list(pool.map(lambda s: s.poll(), servers))
    winners = [a for a in answers if a["errorcode"] == 0]
    assert [w["jobid"] for w in winners] == [jobid]
    assert all(a == NO_JOB for a in answers if a["errorcode"] != 0), answers


# -- holding jobs -------------------------------------------------------------------


def test_max_concurrent_jobs(served: ServedQueue, platform, lane):
    tag, type_name = lane
    first = platform.queue_job(job_for("mc", 1), tags=tag)
    second = platform.queue_job(job_for("mc", 2), tags=tag)
    server = served.server(type_name, max_jobs=1)
    assert server.claim()["jobid"] == first
    assert server.poll() == TOO_MANY
    assert platform.job(second)["status"] == "queued"
    server.finish(first)
    assert server.claim()["jobid"] == second


def test_nbtasks_zero_requeues_the_jobs_the_server_holds(served: ServedQueue, platform, lane):
    tag, type_name = lane
    jobs = [platform.queue_job(job_for("nb0", n), tags=tag) for n in range(2)]
    holder = served.server(type_name, max_jobs=5)
    assert sorted(holder.claim()["jobid"] for _ in jobs) == sorted(jobs)
    holder.poll(nbtasks="0")  # "I hold no job": each goes back with one more failure
    for jobid in jobs:
        assert platform.job(jobid)["nb_fails"] == 1


def test_jobs_given_up_with_nbtasks_zero_may_come_back_to_the_same_server(
    served: ServedQueue, platform, lane
):
    """PROTOCOL.md's "never re-sent to the server it last went to" is said of
    leases that ran out. A job a server gives up with nbtasks=0 is queued
    again with no holder, as the original did (it set sent_to=-1): a lone
    server that restarted gets its job back instead of leaving it stuck."""
    tag, type_name = lane
    jobs = [platform.queue_job(job_for("nb0-again", n), tags=tag) for n in range(2)]
    holder = served.server(type_name, max_jobs=5)
    assert sorted(holder.claim()["jobid"] for _ in jobs) == sorted(jobs)
    again = holder.poll(nbtasks="0")
    assert again["errorcode"] == 0 and again["jobid"] in jobs
    row = platform.job(again["jobid"])
    assert row["nb_fails"] == 1, row


def test_an_expired_lease_goes_to_another_server(served: ServedQueue, platform, lane):
    tag, type_name = lane
    jobid = platform.queue_job(job_for("lease"), tags=tag, timeout=1)
    first = served.server(type_name, max_jobs=5)
    assert first.claim()["jobid"] == jobid
    first_holder = platform.job(jobid)["sent_to"]
    time.sleep(1.5)  # the lease runs out; no result comes
    assert first.poll() == NO_JOB  # never re-sent to the server it last went to
    second = served.server(type_name, max_jobs=5)
    assert second.claim()["jobid"] == jobid
    row = platform.job(jobid)
    assert row["status"] == "sent"
    assert row["nb_fails"] == 1
    assert row["sent_to"] != first_holder
    # The late result of the first server is refused; the new holder's is saved.
    assert first.sendresults(str(jobid), result(0)) == NOT_YOURS
    second.finish(jobid)


# -- sendresults -----------------------------------------------------------------------


def test_sendresults_refusals(served: ServedQueue, platform, lane):
    tag, type_name = lane
    holder = served.server(type_name)
    stranger = served.server(type_name)
    jobid = platform.queue_job(job_for("refusals"), tags=tag)
    waiting = platform.queue_job(job_for("refusals-waiting"), tags=tag)
    assert holder.claim()["jobid"] == jobid
    before = platform.getjob(jobid)

    assert holder.sendresults(resultdata=result(0)) == {
        "errorcode": 2,
        "errormsg": "No job ID sent.",
    }
    assert holder.sendresults(jobid=str(jobid)) == {
        "errorcode": 2,
        "errormsg": "No resultdata received.",
    }
    for not_json in ("not json", "{'errorcode': 0}", "{"):
        assert holder.sendresults(str(jobid), not_json)["errorcode"] == 2
    assert stranger.sendresults(str(jobid), result(0)) == NOT_YOURS
    assert holder.sendresults("987654321", result(0)) == NOT_YOURS
    assert holder.sendresults(str(waiting), result(0)) == NOT_YOURS  # queued, not sent
    assert platform.getjob(jobid) == before  # none of it touched the job

    holder.finish(jobid)
    done = platform.getjob(jobid)
    assert holder.sendresults(str(jobid), result(0, {"late": True})) == NOT_YOURS
    assert platform.getjob(jobid) == done


@pytest.mark.parametrize("errorcode", [2, 3, 7, None], ids=["2", "3", "7", "missing"])
def test_a_failed_result_requeues_the_job(served: ServedQueue, platform, lane, errorcode):
    tag, type_name = lane
    jobid = platform.queue_job(job_for("failed", errorcode or 0), tags=tag)
    first = served.server(type_name)
    assert first.claim()["jobid"] == jobid
    assert first.sendresults(str(jobid), result(errorcode)) == INVALID
    row = platform.job(jobid)
    assert row["status"] == "queued"
    assert row["nb_fails"] == 1
    second = served.server(type_name)
    assert second.claim()["jobid"] == jobid


def test_errorcode_1_result_is_done(served: ServedQueue, platform, lane):
    tag, type_name = lane
    jobid = platform.queue_job(job_for("fatal"), tags=tag)
    server = served.server(type_name)
    assert server.claim()["jobid"] == jobid
    resultdata = result(1, {"error": "compilation failed"})
    assert server.sendresults(str(jobid), resultdata) == SAVED
    answer = platform.getjob(jobid)
    assert answer["origin"] == "done"
    assert json.loads(answer["data"]["resultdata"]) == resultdata


def test_a_job_that_failed_max_fails_times_is_not_handed_out(served: ServedQueue, platform, lane):
    tag, type_name = lane
    jobid = platform.queue_job(job_for("max-fails"), tags=tag)
    for _ in range(2):  # max_fails defaults to 2
        server = served.server(type_name)
        assert server.claim()["jobid"] == jobid
        assert server.sendresults(str(jobid), result(2)) == INVALID
    assert platform.job(jobid)["nb_fails"] == 2
    assert served.server(type_name).poll() == NO_JOB


# -- dedup across a job's life -----------------------------------------------------------


def test_resending_a_sent_job_puts_it_back_in_the_queue(served: ServedQueue, platform, lane):
    tag, type_name = lane
    jobid = platform.queue_job(job_for("resend"), tags=tag, jobusertaskid="resend-1")
    first = served.server(type_name)
    assert first.claim()["jobid"] == jobid
    assert first.sendresults(str(jobid), result(2)) == INVALID  # one failure
    second = served.server(type_name)
    assert second.claim()["jobid"] == jobid
    assert platform.job(jobid)["nb_fails"] == 1

    again = platform.queue_job(
        job_for("resend", 2), jobname="resent", tags=tag, jobusertaskid="resend-1"
    )
    assert again == jobid
    row = platform.job(jobid)
    assert row["status"] == "queued"
    assert row["job_repeats"] == 1
    assert row["nb_fails"] == 0
    assert row["name"] == "resent"
    assert json.loads(row["jobdata"]) == job_for("resend", 2)


def test_a_done_jobs_jobusertaskid_makes_a_new_job(served: ServedQueue, platform, lane):
    tag, type_name = lane
    first = platform.queue_job(job_for("reuse", 1), tags=tag, jobusertaskid="reuse-1")
    server = served.server(type_name, max_jobs=5)
    assert server.claim()["jobid"] == first
    server.finish(first)
    second = platform.queue_job(job_for("reuse", 2), tags=tag, jobusertaskid="reuse-1")
    assert second != first
    assert platform.getjob(first)["origin"] == "done"
    row = platform.job(second)
    assert row["status"] == "queued"
    assert row["job_repeats"] == 0
    assert json.loads(row["jobdata"]) == job_for("reuse", 2)


def test_a_job_in_error_stays_in_error_when_resent(served: ServedQueue, platform, lane):
    tag, _ = lane
    jobid = platform.queue_job(job_for("err", 1), tags=tag, jobusertaskid="err-1")
    # Only maintenance puts a job in `error` (nb_fails reached max_fails), and no
    # protocol request runs it: set the status as it would.
    with served.setup.db.transaction() as session:
        for table, column in (("jobs", "id"), ("job_types", "job_id")):
            session.execute(
                text(f"UPDATE {table} SET status = 'error' WHERE {column} = :id"), {"id": jobid}
            )
    assert platform.job(jobid)["status"] == "error"
    again = platform.queue_job(
        job_for("err", 2), jobname="err-again", tags=tag, jobusertaskid="err-1"
    )
    assert again == jobid
    row = platform.job(jobid)
    assert row["status"] == "error"
    assert row["job_repeats"] == 1
    assert row["name"] == "err-again"
    assert json.loads(row["jobdata"]) == job_for("err", 2)


# -- result delivery -------------------------------------------------------------------------


class _ReturnURL(BaseHTTPRequestHandler):
    received: list[dict]
    arrived: threading.Event

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        self.received.append({k: v[0] for k, v in form.items()})
        body = json.dumps({"bSuccess": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.arrived.set()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_result_is_delivered_to_the_return_url(served: ServedQueue, lane):
    received: list[dict] = []
    arrived = threading.Event()
    handler = type("Handler", (_ReturnURL,), {"received": received, "arrived": arrived})
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{http.server_address[1]}/results"
        platform = served.platform(return_url=url)
        tag, type_name = lane
        jobid = platform.queue_job(job_for("delivery"), jobname="deliver-me", tags=tag)
        server = served.server(type_name)
        assert server.claim()["jobid"] == jobid
        server.finish(jobid, TASKGRADER_OUTPUT)
        assert arrived.wait(30), "no delivery to the return URL"
    finally:
        http.shutdown()
        http.server_close()

    token = received[0]["sToken"]
    outer = jwe.decrypt_compact(
        token,
        platform.private_key,
        algorithms=["RSA-OAEP-256", "A256CBC-HS512", "DEF"],
    )
    header = outer.protected
    assert (header["alg"], header["enc"], header["zip"]) == ("RSA-OAEP-256", "A256CBC-HS512", "DEF")
    assert header["kid"] == platform.name
    inner = jws.deserialize_compact(
        outer.plaintext, RSAKey.import_key(queue_public_pem(served.setup)), algorithms=["RS512"]
    )
    assert inner.protected["alg"] == "RS512"
    assert inner.protected["kid"] == served.setup.settings.key_name
    payload = json.loads(inner.payload)
    assert payload["sTaskName"] == "deliver-me"
    assert payload["sResultData"] == TASKGRADER_OUTPUT
    assert re.match(r"^\d{2}-\d{2}-\d{4}$", payload["date"]), payload
