"""The issue's "done when": the platform is down for a while, the app is restarted
in the middle of its deliveries, and still every result arrives exactly once,
and the admin is told meanwhile. Real gunicorn, real HTTP, real SMTP."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from graderqueue.store.models import Delivery, DeliveryState
from harness.form_server import FormServer
from harness.processes import run_cli
from harness.smtp_sink import SMTPSink
from tests.integration.test_delivery import make_lane, wait_until

JOBS = 12


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    with SMTPSink() as sink:
        yield sink


def states(queue) -> Counter:  # type: ignore[no-untyped-def]
    return Counter(queue.rows(select(Delivery.state, Delivery.attempts > 0)))


@pytest.mark.slow
@pytest.mark.queue_settings(
    delivery_backoff_base_sec=0.2,
    delivery_backoff_max_sec=1,
    delivery_poll_sec=0.5,
    warn_nb=3,
    warn_seconds=0,
    admin_emails="admin@example.org",
    smtp_host="127.0.0.1",
)
def test_restart_while_the_platform_is_down_still_delivers_once(queue, smtp):
    # Each answer takes a while, so the app is stopped with posts under way.
    lane = make_lane(queue, delay=0.5)
    env = {**queue.env, "GRADERQUEUE_SMTP_PORT": str(smtp.port)}
    app = queue.gunicorn(workers=2, threads=8, GRADERQUEUE_SMTP_PORT=str(smtp.port))
    client = queue.client_for(lane.platform, url=app.url)
    server = FormServer(app.url, lane.server_token)
    names = [f"job-{i:02d}" for i in range(JOBS)]
    for name in names:
        jobid = client.sendjob({"taskPath": f"/tasks/{name}"}, jobname=name, tags="c")
        assert server.claim(nbtasks=0)["jobid"] == jobid
        server.finish(jobid, {"graded": name})

    # The platform is down: every result has been tried and is still owed.
    wait_until(
        lambda: states(queue) == Counter({(DeliveryState.PENDING, True): JOBS}),
        what="a failed attempt for every result",
    )
    out = run_cli(["cron"], env=env).stdout
    assert "results not delivered" in out
    (mail,) = smtp.wait_for(1)
    assert mail.recipients == ["admin@example.org"]
    assert mail.subject == f"[graderqueue] results not delivered ({JOBS})"
    assert "ConnectionError" in mail.body

    # Back up; stop the app as soon as results start to arrive.
    lane.endpoint.start()
    try:
        lane.endpoint.wait_accepted(1)
        app.stop()
        before_restart = len(lane.endpoint.accepted)
        # A warm stop: the post under way was recorded, the rest given back.
        locked = select(Delivery.id).where(Delivery.locked_by.is_not(None))
        assert queue.rows(locked) == []
        app.start()
        wait_until(
            lambda: states(queue) == Counter({(DeliveryState.DELIVERED, True): JOBS}),
            what="every result delivered",
        )
    finally:
        lane.endpoint.stop()

    assert lane.endpoint.accepted_names() == names  # each exactly once
    assert before_restart <= JOBS
    # The alert is not repeated within the hour.
    assert "results not delivered" not in run_cli(["cron"], env=env).stdout
    assert len(smtp.messages) == 1
