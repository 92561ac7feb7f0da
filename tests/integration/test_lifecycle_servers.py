"""Grading servers and server tokens with the real CLI, on SQLite and MariaDB: update,
remove, revoke, rotate, drain and pause, and the wake-up of waiting polls after an
undrain or a resume (docs/LIFECYCLE.md)."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from sqlalchemy import select

from graderqueue.identity.certificates import cert_key
from graderqueue.store.models import Event, Job, Server, ServerToken, ServerType
from tests.integration.test_lifecycle_cli import cli, logged, poll, refused, status

pytestmark = pytest.mark.queue_settings(poll_wait_sec=0)
RESULT = '{"errorcode": 0, "errormsg": "ok", "jobdata": {}}'


def server_row(queue, name: str) -> Server | None:  # type: ignore[no-untyped-def]
    rows = queue.rows(select(Server).where(Server.name == name))
    return rows[0][0] if rows else None


def test_server_update_changes_its_settings_and_its_certificate(queue):
    queue.cert_server("g1", "t-c", "0A1B", "CN=Queue CA")
    queue.cert_server("g2", "t-c", "0E0F", "CN=Queue CA")
    out = cli(queue, "server", "update", "g1", "--wakeup-url", "udp://127.0.0.1:20001",
              "--max-jobs", "3", "--type", "t-java", "--ssl-serial", "0C0D").stdout  # fmt: skip
    assert "Server `g1` updated" in out and "type t-java (was t-c)" in out
    g1 = server_row(queue, "g1")
    assert (g1.wakeup_url, g1.max_concurrent_jobs, g1.ssl_key) == (
        "udp://127.0.0.1:20001", 3, cert_key("0C0D", "CN=Queue CA")
    )  # fmt: skip
    assert g1.type_id == queue.scalar(select(ServerType.id).where(ServerType.name == "t-java"))
    (message,) = logged(queue, "server_updated")
    assert message.startswith("server g1: wake-up URL") and message.endswith("; by cli")
    assert "unchanged" in cli(queue, "server", "update", "g1", "--max-jobs", "3").stdout

    refused(queue, "server", "update", "g2", "--ssl-serial", "0c:0d", says="Another server")
    refused(queue, "server", "update", "g2", "--wakeup-url", "http://x", says="udp://HOST:PORT")
    refused(queue, "server", "update", "g2", "--max-jobs", "-1", says="max jobs must be")
    refused(queue, "server", "update", "g2", "--type", "nosuch", says="does not exist")
    refused(queue, "server", "update", "g2", says="Nothing to change")
    token = queue.server_token("t-c")
    poll(queue, token)  # registers token1-127.0.0.1
    refused(queue, "server", "update", "token1-127.0.0.1", "--ssl-serial", "01",
            says="no certificate to change")  # fmt: skip


def test_server_remove_queues_the_jobs_it_held_again(queue):
    client = queue.client_for(queue.platform("p2"))
    token = queue.server_token("t-c")
    job_id = client.sendjob({"x": 1}, tags="c")
    assert poll(queue, token)["jobid"] == job_id
    name = "token1-127.0.0.1"
    old_id = server_row(queue, name).id

    out = cli(queue, "server", "remove", name).stdout
    assert f"1 job(s) it held queued again: #{job_id}" in out
    job = queue.rows(select(Job).where(Job.id == job_id))[0][0]
    assert (job.status, job.sent_to, job.nb_fails) == ("queued", None, 0), "no failure counted"
    assert logged(queue, "server_removed") == [
        f"{name} removed by cli; 1 job(s) it held queued again"
    ]
    (released,) = queue.rows(select(Event).where(Event.kind == "released_by_server"))
    assert (released[0].job_id, released[0].server_id) == (job_id, old_id)

    late = queue.post("/sendresults.php", server_token=token, jobid=str(job_id), resultdata="{}")
    assert late["errorcode"] == 2, "the result of the removed server is refused"
    # Its token still works: the machine registers again, as a new server.
    assert poll(queue, token)["jobid"] == job_id
    assert server_row(queue, name) is not None
    refused(queue, "server", "remove", "nosuch", says="does not exist")


def test_a_server_that_graded_jobs_can_be_removed(queue):
    """Done jobs forget the server (their sent_to), as the hourly purge does."""
    client = queue.client_for(queue.platform("p2"))
    token = queue.server_token("t-c")
    job_id = client.sendjob({"x": 1}, tags="c")
    poll(queue, token)
    assert queue.post("/sendresults.php", server_token=token, jobid=str(job_id),
                      resultdata=RESULT)["errorcode"] == 0  # fmt: skip
    cli(queue, "server", "remove", "token1-127.0.0.1")
    assert status(queue, job_id) == "done"
    assert queue.scalar(select(Job.sent_to).where(Job.id == job_id)) is None


def test_server_token_rotate_and_revoke(queue):
    client = queue.client_for(queue.platform("p2"))
    old = queue.server_token("t-c", "cloud")
    job_id = client.sendjob({"x": 1}, tags="c")
    assert poll(queue, old)["jobid"] == job_id
    assert (
        "\tcloud\ttype t-c\tmax jobs 1\tplain wake-ups\t1 server(s)\tcreated "
        in cli(queue, "server-token", "list").stdout
    )

    new = cli(queue, "server-token", "rotate", "cloud").stdout.strip()
    assert len(new) > 30 and new != old
    assert poll(queue, old)["errorcode"] == 3, "the old token stops at once"
    servers = queue.rows(select(Server.id))
    still = queue.post("/poll.php", server_token=new, nbtasks="1")
    assert still["errorcode"] == 1, "the same server, still holding its job, has no room"
    assert queue.rows(select(Server.id)) == servers, "no new registration"
    assert status(queue, job_id) == "sent"

    out = cli(queue, "server-token", "revoke", "cloud").stdout
    assert "Servers removed: `cloud-127.0.0.1`; 1 job(s) they held queued again." in out
    assert poll(queue, new)["errorcode"] == 3
    assert queue.rows(select(Server.id)) == [] and queue.rows(select(ServerToken.id)) == []
    assert status(queue, job_id) == "queued"
    assert logged(queue, "server_token_rotated") == ["server token cloud rotated; by cli"]
    assert logged(queue, "server_token_revoked") == [
        "server token cloud revoked; servers removed: cloud-127.0.0.1; by cli"
    ]
    refused(queue, "server-token", "revoke", "cloud", says="does not exist")


def handed_out(queue, token: str) -> int | None:  # type: ignore[no-untyped-def]
    """The job a poll gets, graded at once (so the next poll may get another), or None."""
    answer = poll(queue, token)
    if "jobid" not in answer:
        return None
    done = queue.post(
        "/sendresults.php", server_token=token, jobid=str(answer["jobid"]), resultdata=RESULT
    )
    assert done["errorcode"] == 0, done
    return answer["jobid"]


def test_drain_and_pause_stop_hand_outs_but_not_intake(queue):
    client = queue.client_for(queue.platform("p2"))
    token = queue.server_token("t-c")
    poll(queue, token)
    name = "token1-127.0.0.1"
    first = client.sendjob({"x": 1}, tags="c")

    cli(queue, "server", "drain", name)
    assert handed_out(queue, token) is None and status(queue, first) == "queued"
    listed = cli(queue, "server", "list").stdout.rstrip()
    assert "\tholds 0\t" in listed and listed.endswith("\tdrained")
    cli(queue, "server", "undrain", name)
    assert handed_out(queue, token) == first

    cli(queue, "pause")
    second = client.sendjob({"x": 2}, tags="c")  # still accepted
    assert handed_out(queue, token) is None
    cli(queue, "resume")
    assert handed_out(queue, token) == second

    cli(queue, "pause", "--type", "t-c")
    third = client.sendjob({"x": 3}, tags="c")
    assert "\tt-c\tc\tpaused" in cli(queue, "type", "list").stdout
    cli(queue, "resume")  # the queue-wide switch: t-c stays paused
    assert handed_out(queue, token) is None
    cli(queue, "resume", "--type", "t-c")
    assert handed_out(queue, token) == third
    refused(queue, "pause", "--type", "nosuch", says="does not exist")
    assert [m for (m,) in queue.rows(
        select(Event.message)
        .where(Event.kind.in_(["server_drained", "server_undrained", "dispatch_paused",
                               "dispatch_resumed"]))
        .order_by(Event.id)
    )] == [
        "drained by cli", "undrained by cli", "the queue paused by cli", "the queue resumed by cli",
        "type t-c paused by cli", "the queue resumed by cli", "type t-c resumed by cli",
    ]  # fmt: skip


@pytest.mark.queue_settings(poll_wait_sec=30, poll_recheck_sec=120)
def test_undrain_and_resume_reach_a_poll_already_waiting(queue):
    """Without the hint the poll would wait its 30 s and answer "no job"."""
    site = queue.gunicorn(workers=2, threads=8)
    token = queue.server_token("t-c")
    client = queue.client_for(queue.platform("p2"), url=site.url)
    requests.post(site.url + "/test.php", data={"server_token": token}, timeout=30)
    name = "token1-127.0.0.1"  # registered by that first request
    for stop, restart in [
        (["server", "drain", name], ["server", "undrain", name]),
        (["pause", "--type", "t-c"], ["resume", "--type", "t-c"]),
    ]:
        cli(queue, *stop)
        job_id = client.sendjob({"stop": stop}, tags="c")
        answer: dict = {}

        def waiting_poll(answer: dict = answer) -> None:
            response = requests.post(
                site.url + "/poll.php", data={"server_token": token, "nbtasks": "0"}, timeout=60
            )
            answer.update(response.json(), at=time.monotonic())

        thread = threading.Thread(target=waiting_poll)
        thread.start()
        time.sleep(2)  # it reaches its wait (nothing it may take)
        assert not answer, answer
        started = time.monotonic()
        cli(queue, *restart)
        thread.join(60)
        assert answer.get("jobid") == job_id, answer
        assert answer["at"] - started < 20, "the poll heard of it, not its own time running out"
        queue.post("/sendresults.php", server_token=token, jobid=str(job_id), resultdata=RESULT)
