"""Requeue, cancel and the send-job form's queueing, on SQLite and MariaDB."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from graderqueue.admin import actions as admin_actions
from graderqueue.client import ClientError
from graderqueue.errors import BadRequest, Conflict, UnknownJob
from graderqueue.queue import control, states
from graderqueue.registry.view import RegistryView
from graderqueue.store.models import Event, Job, JobStatus, JobType

RESULT = json.dumps({"errorcode": 0, "errormsg": "ok", "jobdata": {}})


def job_state(queue, job_id: int) -> tuple[str, int, set[str]]:  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        job = session.get(Job, job_id)
        types = set(session.scalars(select(JobType.status).where(JobType.job_id == job_id)))
        return job.status, job.nb_fails, types


def test_requeue_brings_a_job_in_error_back_and_a_server_can_claim_it(queue):
    client = queue.client_for(queue.platform("p2"))
    token = queue.server_token("t-c")
    job_id = client.sendjob({"x": 1}, tags="c")
    with queue.db.transaction() as session:
        session.execute(
            Job.__table__.update().where(Job.id == job_id).values(status="error", nb_fails=2)
        )
        states.sync_types(session, job_id, JobStatus.ERROR)
    assert queue.post("/poll.php", server_token=token, nbtasks="0")["errorcode"] == 1

    with queue.db.transaction() as session:
        type_ids = control.act(session, job_id, "requeue", actor="alice").type_ids
    assert sorted(type_ids) == sorted(jobs_types(queue, job_id))
    assert job_state(queue, job_id) == ("queued", 0, {"queued"})
    assert queue.post("/poll.php", server_token=token, nbtasks="0")["jobid"] == job_id
    with queue.db.transaction() as session:
        event = session.scalars(select(Event).where(Event.kind == "requeued")).one()
        assert event.job_id == job_id and "alice" in event.message and "was error" in event.message


def jobs_types(queue, job_id: int) -> list[int]:  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        return states.type_ids_of(session, job_id)


def test_requeue_takes_a_job_from_the_server_holding_it(queue):
    client = queue.client_for(queue.platform("p2"))
    holder = queue.server_token("t-c")
    job_id = client.sendjob({"x": 1}, tags="c")
    assert queue.post("/poll.php", server_token=holder, nbtasks="1")["jobid"] == job_id

    holder_row = holder_id(queue)
    with queue.db.transaction() as session:
        assert control.act(session, job_id, "requeue", actor="bob").holders == {holder_row}
    assert job_state(queue, job_id) == ("queued", 0, {"queued"})
    late = queue.post("/sendresults.php", server_token=holder, jobid=str(job_id), resultdata=RESULT)
    assert late["errorcode"] == 2, "the old holder's result is refused"
    assert queue.post("/poll.php", server_token=holder, nbtasks="0")["jobid"] == job_id


def holder_id(queue) -> int:  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        return session.scalars(select(Job.sent_to).where(Job.sent_to.is_not(None))).one()


def test_cancel_ends_a_live_job_and_getjob_no_longer_knows_it(queue):
    client = queue.client_for(queue.platform("p2"))
    job_id = client.sendjob({"x": 1}, jobname="unwanted", tags="c")
    with queue.db.transaction() as session:
        control.act(session, job_id, "cancel", actor="alice")
    with queue.db.transaction() as session:
        job = session.get(Job, job_id)
        assert (job.status, job.dedup_key) == ("cancelled", None)
        assert set(session.scalars(select(JobType.status).where(JobType.job_id == job_id))) == {
            "cancelled"
        }
        event = session.scalars(select(Event).where(Event.job_id == job_id)).one()
        assert event.kind == "cancelled" and "alice" in event.message
    with pytest.raises(ClientError, match="Invalid jobid"):
        client.getjob(job_id)
    assert (
        queue.post("/poll.php", server_token=queue.server_token("t-c"), nbtasks="0")["errorcode"]
        == 1
    )
    again = client.sendjob({"x": 1}, jobname="unwanted", tags="c")
    assert again != job_id, "sent again after a cancel: a new job, as in the original"


def test_a_done_job_cannot_be_cancelled_and_unknown_jobs_are_refused(queue):
    client = queue.client_for(queue.platform("p2"))
    token = queue.server_token("t-c")
    job_id = client.sendjob({"x": 1}, tags="c")
    queue.post("/poll.php", server_token=token, nbtasks="0")
    queue.post("/sendresults.php", server_token=token, jobid=str(job_id), resultdata=RESULT)
    before = queue.snapshot()
    with pytest.raises(Conflict, match="is done"), queue.db.transaction() as session:
        control.act(session, job_id, "cancel", actor="alice")
    for action in control.ACTIONS:
        with pytest.raises(UnknownJob), queue.db.transaction() as session:
            control.act(session, 999_999, action, actor="alice")
    assert queue.snapshot() == before


def test_send_from_interface_queues_jobs_without_a_platform(queue):
    fields = {"request": "sendjob", "jobdata": '{"taskPath": "/t"}', "tags": "java", "jobname": "j"}
    sent = admin_actions.send_from_interface(
        queue.db, RegistryView(queue.db, 0), queue.settings, fields, copies=3
    )
    assert len(set(sent.job_ids)) == 3, "each copy is a new job"
    with queue.db.transaction() as session:
        rows = session.scalars(select(Job).where(Job.id.in_(sent.job_ids))).all()
        assert {(r.platform_id, r.received_via, r.name, r.status) for r in rows} == {
            (None, "interface", "j", "queued")
        }
        assert sent.type_ids == states.type_ids_of(session, sent.job_ids[0])
    assert len(sent.type_ids) == 1, "only t-java handles the java tag"


def test_send_from_interface_validates_like_the_api(queue):
    before = queue.snapshot()
    bad = [
        ({"request": "sendjob", "jobdata": "{oops"}, 1, "decoding job JSON"),
        ({"request": "sendjob", "jobdata": "{}", "tags": "nope"}, 1, "unrecognized"),
        ({"request": "sendsolution", "taskpath": "/t"}, 1, "missing"),
        ({"request": "sendjob", "jobdata": "{}"}, 0, "copies"),
        ({"request": "sendjob", "jobdata": "{}", "jobusertaskid": "a"}, 2, "distinct"),
    ]
    for fields, copies, message in bad:
        with pytest.raises(BadRequest, match=f"(?i){message}"):
            admin_actions.send_from_interface(
                queue.db, RegistryView(queue.db, 0), queue.settings, fields, copies=copies
            )
    assert queue.snapshot() == before
