"""``graderqueue cron``'s work on a real database: errors, purge, alerts, leases."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from graderqueue.config import replace
from graderqueue.maintenance import cron, leases
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import (
    AlertSent,
    Callback,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Event,
    Job,
    JobStatus,
    JobType,
    Listener,
    Result,
    Run,
    RunState,
    SeenTokenId,
    Server,
    ServerToken,
    ServerType,
    utcnow,
)
from harness.smtp_sink import SMTPSink
from tests.integration.test_delivery import Lane, make_lane

OLD = timedelta(days=8)


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    with SMTPSink() as sink:
        yield sink


def mail_settings(queue, smtp, **changes):  # type: ignore[no-untyped-def]
    return replace(
        queue.settings,
        admin_emails=("admin@example.org", "oncall@example.org"),
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        **changes,
    )


def status_of(queue, job_id: int) -> str:  # type: ignore[no-untyped-def]
    return queue.scalar(select(Job.status).where(Job.id == job_id))


def set_job(queue, job_id: int, **values) -> None:  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))
        if "status" in values:
            session.execute(
                update(JobType).where(JobType.job_id == job_id).values(status=values["status"])
            )


def add_server(queue, name: str, *, token: bool, fails: int, url: str = "") -> int:  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        type_id = session.scalar(select(ServerType.id).where(ServerType.name == "t-c"))
        token_id = session.scalar(select(func.min(ServerToken.id))) if token else None
        server = Server(
            name=name,
            type_id=type_id,
            token_id=token_id,
            ip=name,
            wakeup_url=url,
            wakeup_fails=fails,
        )
        session.add(server)
        session.flush()
        return server.id


# -- every run --------------------------------------------------------------------------------


def test_jobs_that_failed_too_often_go_to_error(queue):
    client = queue.client_for(queue.platform("plat"))
    tired, timed_out, fine = (client.sendjob({"n": i}, tags="c") for i in range(3))
    set_job(queue, tired, nb_fails=2)
    set_job(
        queue,
        timed_out,
        status=JobStatus.SENT,
        nb_fails=2,
        lease_expires=utcnow() - timedelta(seconds=1),
    )
    set_job(queue, fine, nb_fails=1)

    report = cron.run(queue.db, queue.settings)
    assert report.errored_jobs == 2
    assert report.problems == []
    assert [status_of(queue, j) for j in (tired, timed_out, fine)] == ["error", "error", "queued"]
    type_status = dict(queue.rows(select(JobType.job_id, JobType.status)))
    assert type_status[tired] == type_status[timed_out] == "error"
    logged = queue.rows(select(Event.job_id).where(Event.kind == events.JOB_ERROR))
    assert sorted(r.job_id for r in logged) == sorted([tired, timed_out])

    token = queue.server_token("t-c")
    assert queue.post("/poll.php", server_token=token)["jobid"] == fine
    assert cron.run(queue.db, queue.settings).errored_jobs == 0  # idempotent


def test_servers_whose_wakeups_failed_are_tried_again(queue):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    received: list[bytes] = []

    def answer() -> None:
        data, address = listener.recvfrom(64)
        received.append(data)
        listener.sendto(b"ok", address)

    thread = threading.Thread(target=answer)
    thread.start()
    url = f"udp://127.0.0.1:{listener.getsockname()[1]}"
    back = add_server(queue, "back", token=False, fails=4, url=url)
    healthy = add_server(queue, "healthy", token=False, fails=0, url="udp://127.0.0.1:9")
    try:
        report = cron.run(queue.db, queue.settings)
    finally:
        thread.join(15)
        listener.close()
    assert received == [b"wakeup"]
    assert (report.wakeups_tried, report.wakeups_ok) == (1, 1)
    fails = dict(queue.rows(select(Server.id, Server.wakeup_fails)))
    assert fails[back] == 0
    assert fails[healthy] == 0


# -- hourly: the purge ------------------------------------------------------------------------


@dataclass
class Scene:
    """Old and new rows of every kind the hourly run looks at."""

    lane: Lane
    done_old: int
    done_old_owed: int
    done_new: int
    error_old: int
    queued_old: int
    sent_old: int
    dead_free: int
    dead_busy: int
    alive: int
    cert_dead: int

    @property
    def kept_jobs(self) -> list[int]:
        return sorted([self.done_old_owed, self.done_new, self.queued_old, self.sent_old])


def build_scene(queue) -> Scene:  # type: ignore[no-untyped-def]
    lane = make_lane(queue)
    done_old, done_old_owed, done_new = (lane.finish_job(f"done-{i}") for i in range(3))
    client = queue.client_for(lane.platform)
    error_old, queued_old, sent_old = (client.sendjob({"n": i}, tags="c") for i in range(3))
    old = utcnow() - OLD
    dead_free = add_server(queue, "10.0.0.1", token=True, fails=60)
    dead_busy = add_server(queue, "10.0.0.2", token=True, fails=60)
    alive = add_server(queue, "10.0.0.3", token=True, fails=2)
    cert_dead = add_server(queue, "cert-dead", token=False, fails=60)

    set_job(queue, done_old, grading_end_time=old, received_time=old)
    set_job(queue, done_old_owed, grading_end_time=old, received_time=old)
    # A recent job graded by the server about to be removed: it forgets it.
    set_job(queue, done_new, sent_to=dead_free)
    set_job(queue, error_old, status=JobStatus.ERROR, received_time=old)
    set_job(queue, queued_old, received_time=old)
    set_job(
        queue,
        sent_old,
        status=JobStatus.SENT,
        sent_to=dead_busy,
        received_time=old,
        lease_expires=utcnow() + timedelta(hours=1),
    )
    now = utcnow()
    with queue.db.transaction() as session:
        delivered = session.scalars(select(Delivery).where(Delivery.job_id == done_old)).one()
        delivered.state = DeliveryState.DELIVERED
        session.add(DeliveryAttempt(delivery_id=delivered.id, ok=True, time=old))
        session.add_all(
            [
                Event(time=old, kind="old_event", message="old"),
                Event(time=now, kind="new_event", message="new"),
                SeenTokenId(platform_id=lane.platform.id, jti="old", expires_at=old),
                SeenTokenId(platform_id=lane.platform.id, jti="new", expires_at=now + OLD),
                Listener(host="127.0.0.1", port=1, pid=1, heartbeat=old),
                Listener(host="127.0.0.1", port=2, pid=2, heartbeat=now),
                # Runs: ended long ago (goes); ended long ago but its end still
                # owed to its callback URL (stays); running since long ago (stays).
                Run(id=1, state=RunState.FINISHED, spec="{}", created_at=old, ended_at=old),
                Run(id=2, state=RunState.FAILED, spec="{}", created_at=old, ended_at=old),
                Run(id=3, state=RunState.STUDENTS, spec="{}", created_at=old),
                Callback(
                    platform_id=1,
                    url="https://p/1",
                    run_id=1,
                    body="",
                    created_at=old,
                    state=DeliveryState.DELIVERED,
                ),
                Callback(platform_id=1, url="https://p/2", run_id=2, body="", created_at=old),
            ]
        )
    return Scene(
        lane, done_old, done_old_owed, done_new, error_old, queued_old, sent_old,
        dead_free, dead_busy, alive, cert_dead,
    )  # fmt: skip


def check_scene_after_purge(queue, scene: Scene) -> None:  # type: ignore[no-untyped-def]
    assert sorted(queue.rows(select(Job.id))) == [(j,) for j in scene.kept_jobs]
    gone = [scene.done_old, scene.error_old]
    for model, column in (
        (Result, Result.job_id),
        (JobType, JobType.job_id),
        (Delivery, Delivery.job_id),
    ):
        assert queue.rows(select(column).where(column.in_(gone))) == [], model
    assert queue.rows(select(DeliveryAttempt.id)) == []
    assert queue.scalar(select(Result.job_id).where(Result.job_id == scene.done_old_owed))
    kinds = {r.kind for r in queue.rows(select(Event.kind))}
    assert "old_event" not in kinds and "new_event" in kinds
    servers = {r.id for r in queue.rows(select(Server.id))}
    assert scene.dead_free not in servers
    assert {scene.dead_busy, scene.alive, scene.cert_dead} <= servers
    assert queue.scalar(select(Job.sent_to).where(Job.id == scene.done_new)) is None
    assert queue.rows(select(SeenTokenId.jti)) == [("new",)]
    ports = {r.port for r in queue.rows(select(Listener.port))}
    assert 1 not in ports and 2 in ports
    assert sorted(queue.rows(select(Run.id))) == [(2,), (3,)]
    assert queue.rows(select(Callback.run_id)) == [(2,)]


@pytest.mark.queue_settings(delivery_enabled=False)
def test_purge_removes_what_is_old_and_keeps_the_rest(queue):
    scene = build_scene(queue)
    report = cron.run(queue.db, queue.settings, hourly=True)
    assert report.problems == []
    assert report.hourly == "done"
    assert report.purged["jobs"] == 2
    assert report.purged["servers"] == 1
    assert (report.purged["runs"], report.purged["callbacks"]) == (1, 1)
    check_scene_after_purge(queue, scene)
    removed = queue.rows(select(Event.server_id).where(Event.kind == events.SERVER_REMOVED))
    assert removed == [(scene.dead_free,)]

    again = cron.run(queue.db, queue.settings, hourly=True)
    assert again.problems == []
    assert set(again.purged.values()) == {0}
    check_scene_after_purge(queue, scene)


# -- alerts -----------------------------------------------------------------------------------


@pytest.mark.queue_settings(delivery_enabled=False)
def test_admins_are_mailed_once_an_hour(queue, smtp):
    settings = mail_settings(queue, smtp, warn_nb=3, warn_seconds=60, warn_wakeup_fails=3)
    client = queue.client_for(queue.platform("plat"))
    stuck = [client.sendjob({"n": i}, tags="c") for i in range(3)]
    client.sendjob({"n": "fresh"}, tags="c")  # not waiting long: not counted
    for job_id in stuck:
        set_job(queue, job_id, received_time=utcnow() - timedelta(minutes=5))
    set_job(queue, stuck[0], status=JobStatus.ERROR)
    add_server(queue, "sleepy", token=False, fails=5, url="")

    assert cron.run(queue.db, settings).alerts == ["jobs stuck"]
    (mail,) = smtp.wait_for(1)
    assert mail.subject == "[graderqueue] jobs stuck or in error (3)"
    assert mail.recipients == ["admin@example.org", "oncall@example.org"]
    assert mail.message["From"] == settings.mail_from
    assert "1 error, 2 queued" in mail.body
    assert all(f"#{j} " in mail.body for j in stuck)

    assert cron.run(queue.db, settings).alerts == []  # not again within the hour
    assert cron.run(queue.db, settings, hourly=True).alerts == ["servers not waking up"]
    assert cron.run(queue.db, settings, hourly=True).alerts == []
    mails = smtp.wait_for(2)
    assert mails[1].subject == "[graderqueue] grading servers do not wake up (1)"
    assert "sleepy:" in mails[1].body

    with queue.db.transaction() as session:
        session.execute(update(AlertSent).values(last_sent_at=utcnow() - timedelta(minutes=61)))
    assert cron.run(queue.db, settings).alerts == ["jobs stuck"]
    assert len(smtp.wait_for(3)) == 3
    assert queue.scalar(select(func.count()).where(Event.kind == events.ALERT_SENT)) == 3


@pytest.mark.queue_settings(delivery_enabled=False)
def test_an_alert_that_could_not_be_sent_is_tried_again(queue, smtp):
    client = queue.client_for(queue.platform("plat"))
    for i in range(2):
        set_job(queue, client.sendjob({"n": i}, tags="c"), received_time=utcnow() - OLD)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()

    down = replace(mail_settings(queue, smtp, warn_nb=2), smtp_port=dead_port)
    report = cron.run(queue.db, down)
    assert report.alerts == []
    assert any("Cannot send e-mail" in p for p in report.problems), report.problems
    assert queue.rows(select(AlertSent.kind)) == []

    assert cron.run(queue.db, mail_settings(queue, smtp, warn_nb=2)).alerts == ["jobs stuck"]
    assert smtp.wait_for(1)[0].subject == "[graderqueue] jobs stuck or in error (2)"


# -- several nodes at once --------------------------------------------------------------------


def test_the_hourly_lease_is_exclusive_until_released_or_expired(queue):
    db = queue.db
    assert leases.acquire_lease(db, "job", "node-a", 60)
    assert not leases.acquire_lease(db, "job", "node-b", 60)
    assert leases.acquire_lease(db, "job", "node-a", 60)  # renewal
    leases.release_lease(db, "job", "node-b")  # not its lease: no effect
    assert not leases.acquire_lease(db, "job", "node-b", 60)
    leases.release_lease(db, "job", "node-a")
    assert leases.acquire_lease(db, "job", "node-b", -1)  # taken, already expired
    assert leases.acquire_lease(db, "job", "node-a", 60)  # a dead holder's lease


@pytest.mark.queue_settings(delivery_enabled=False)
def test_two_crons_at_once_are_safe(queue, smtp):
    scene = build_scene(queue)
    client = queue.client_for(scene.lane.platform)
    tired = [client.sendjob({"tired": i}, tags="c") for i in range(4)]
    for job_id in tired:
        set_job(queue, job_id, nb_fails=5)
    settings = mail_settings(queue, smtp, warn_nb=2, warn_seconds=60, warn_wakeup_fails=3)

    nodes = [Database(settings) for _ in range(2)]
    start = threading.Barrier(2)
    reports: list[cron.Report] = []

    def node(db: Database) -> None:
        start.wait()
        reports.append(cron.run(db, settings, hourly=True))

    threads = [threading.Thread(target=node, args=(db,)) for db in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for db in nodes:
        db.dispose()

    assert len(reports) == 2
    assert [r.problems for r in reports] == [[], []]
    assert sum(r.errored_jobs for r in reports) == 4
    assert all(status_of(queue, j) == "error" for j in tired)
    # Each row is deleted once, whichever node did it.
    assert sum(r.purged.get("jobs", 0) for r in reports) == 2
    # tired jobs went to error now: too recent to purge
    scene_jobs = set(scene.kept_jobs) | set(tired)
    assert {r.id for r in queue.rows(select(Job.id))} == scene_jobs
    # One e-mail per alert, not one per node.
    subjects = Counter(m.subject.rsplit(" (", 1)[0] for m in smtp.messages)
    assert subjects == Counter(
        {
            "[graderqueue] jobs stuck or in error": 1,
            "[graderqueue] grading servers do not wake up": 1,
        }
    )
    assert sorted(a for r in reports for a in r.alerts) == [
        "jobs stuck",
        "servers not waking up",
    ]
