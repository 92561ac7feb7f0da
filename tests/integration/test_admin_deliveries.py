"""The deliveries page's figures and "retry now", against a real return URL that is
down (a closed port), then back (a real HTTP receiver); both databases."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from graderqueue.admin import deliveries
from graderqueue.config import replace
from graderqueue.delivery import redelivery
from graderqueue.delivery.worker import Worker
from graderqueue.identity import passwords
from graderqueue.protocol.keys import QueueKeys
from graderqueue.store.models import AdminUser, Delivery, DeliveryState, utcnow
from harness.platform_endpoint import PlatformEndpoint
from harness.processes import free_port

RESULT = json.dumps({"errorcode": 0, "errormsg": "ok", "jobdata": {"graded": True}})


def finish(queue, client, token: str, name: str) -> int:  # type: ignore[no-untyped-def]
    job_id = client.sendjob({"taskPath": "/tasks/t"}, jobname=name, tags="c")
    assert queue.post("/poll.php", server_token=token, nbtasks="0")["jobid"] == job_id
    saved = queue.post("/sendresults.php", server_token=token, jobid=str(job_id), resultdata=RESULT)
    assert saved["errorcode"] == 0
    return job_id


def worker(queue) -> Worker:  # type: ignore[no-untyped-def]
    keys = QueueKeys(queue.settings.resolved_key_dir, queue.settings.key_name)
    # A long backoff: only "retry now" can bring the failed result forward.
    settings = replace(queue.settings, delivery_backoff_base_sec=3600, delivery_timeout_sec=5)
    return Worker(queue.db, settings, keys)


@pytest.mark.queue_settings(delivery_enabled=False)  # only the test's worker posts
def test_a_failing_platform_shows_its_backlog_and_retry_now_delivers_once(queue):
    port = free_port()  # nothing listens yet: connection refused
    platform = queue.platform("down-plat", return_url=f"http://127.0.0.1:{port}/results")
    client = queue.client_for(platform)
    token = queue.server_token("t-c")
    job_id = finish(queue, client, token, "owed-1")

    assert worker(queue).run_pass() == {DeliveryState.PENDING: 1}
    with queue.db.reading() as session:
        (row,) = [p for p in deliveries.by_platform(session) if p.name == "down-plat"]
        assert (row.pending, row.given_up, row.last_success) == (1, 0, None)
        assert row.failing and row.last_error and row.oldest_pending is not None
        (owed,) = deliveries.backlog(session, platform.id)
        assert (owed.job_id, owed.attempts, owed.state) == (job_id, 1, "pending")
        assert owed.next_attempt_at > utcnow()  # waiting out its backoff
        assert deliveries.badges(session, [job_id])[job_id].label == "pending (1)"
    assert worker(queue).run_pass() == {}, "not due: the backoff holds it"

    queue_keys = QueueKeys(queue.settings.resolved_key_dir, queue.settings.key_name)
    endpoint = PlatformEndpoint(platform.private_pem, queue_keys.active.public_pem, port=port)
    endpoint.start()
    try:
        with queue.db.transaction() as session:
            assert redelivery.retry_now(session, platform_id=platform.id, actor="admin t") == 1
        assert worker(queue).run_pass() == {DeliveryState.DELIVERED: 1}
        assert worker(queue).run_pass() == {}
    finally:
        endpoint.stop()
    assert [p["sTaskName"] for p in endpoint.accepted] == ["owed-1"]
    with queue.db.reading() as session:
        (row,) = [p for p in deliveries.by_platform(session) if p.name == "down-plat"]
        assert (row.pending, row.failing) == (0, False) and row.last_success is not None
        assert deliveries.backlog(session, platform.id) == []
        assert deliveries.badges(session, [job_id])[job_id].label == "delivered"
        # Delivered: nothing left to retry.
    with queue.db.transaction() as session:
        assert redelivery.retry_now(session, job_id=job_id) == 0


@pytest.mark.queue_settings(delivery_enabled=False)
def test_the_pages_show_deliveries_and_retry_a_job(sqlite_queue):
    queue = sqlite_queue
    port = free_port()
    platform = queue.platform("down-plat", return_url=f"http://127.0.0.1:{port}/results")
    owed = finish(queue, queue.client_for(platform), queue.server_token("t-c"), "owed-2")
    untracked = finish(
        queue, queue.client_for(queue.platform("no-url")), queue.server_token("t-c"), "mine"
    )
    worker(queue).run_pass()
    with queue.db.transaction() as session:
        session.add(
            AdminUser(
                username="alice", password_hash=passwords.hash_password("correct horse battery")
            )
        )
    client = queue.app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post(
        "/admin/login",
        data={"username": "alice", "password": "correct horse battery", "csrf_token": csrf},
    )
    # A new session after the login: a new CSRF token.
    listing = client.get("/admin/deliveries").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', listing).group(1)
    assert 'id="platform-' in listing and "down-plat" in listing and "Connection refused" in listing
    one = client.get("/admin/deliveries?platform=down-plat").get_data(as_text=True)
    assert f'id="owed-{owed}"' in one
    done = client.get("/admin/jobs/done").get_data(as_text=True)
    assert re.search(rf'id="job-{owed}".*?pending \(1\)', done, re.S)
    assert re.search(rf'id="job-{untracked}".*?none owed', done, re.S)

    with queue.db.reading() as session:
        before = session.scalar(select(Delivery.next_attempt_at).where(Delivery.job_id == owed))
    assert client.post(f"/admin/jobs/{owed}/delivery/retry", data={}).status_code == 400
    answer = client.post(
        f"/admin/jobs/{owed}/delivery/retry",
        data={"csrf_token": csrf, "next": "https://elsewhere.example/"},
    )
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/admin/jobs/{owed}")
    with queue.db.reading() as session:
        after = session.scalar(select(Delivery.next_attempt_at).where(Delivery.job_id == owed))
    assert after < before
    assert client.get("/admin/deliveries?platform=nobody").status_code == 200
    assert client.post("/admin/deliveries/999/retry", data={"csrf_token": csrf}).status_code == 404


def test_unknown_admin_urls_get_the_admin_error_page(sqlite_queue):
    queue = sqlite_queue
    client = queue.app.test_client()
    assert client.get("/admin/no-such-page").status_code == 302  # log in first
    with queue.db.transaction() as session:
        session.add(
            AdminUser(
                username="alice", password_hash=passwords.hash_password("correct horse battery")
            )
        )
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"username": "alice", "password": "correct horse battery", "csrf_token": csrf}
    client.post("/admin/login", data=form)

    missing = client.get("/admin/no-such-page")
    assert missing.status_code == 404 and "Content-Security-Policy" in missing.headers
    assert '<header class="top">' in missing.get_data(as_text=True)
    wrong_method = client.get("/admin/deliveries/1/retry")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"]
    assert "Method Not Allowed" in wrong_method.get_data(as_text=True)
    # Outside /admin, the app's own answers.
    assert '<header class="top">' not in client.get("/no-such-page").get_data(as_text=True)
    assert client.get("/api/v1/no-such").mimetype == "application/problem+json"
