"""/metrics through real gunicorn workers, who may read it, and /readyz (docs/METRICS.md).

Work is done through two gunicorn workers (platforms send jobs, a grading
server polls and reports, an operator cancels, results are posted to a
platform that is down, idle servers are woken over UDP), then /metrics is
scraped several times, each time on a new connection so that either worker
may answer, and read with prometheus_client's own parser. Every scrape must
give the whole queue's counts, equal to what the database and the UDP
listeners saw, not the share of the worker that answered; the gauges must
be what the database holds.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from graderqueue.identity import api_callers
from graderqueue.maintenance import autoscale
from graderqueue.observability import metrics
from graderqueue.registry import operations
from graderqueue.store import events
from graderqueue.store.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Event,
    Handout,
    Job,
    JobStatus,
    JobType,
    Platform,
    Server,
    ServerType,
    utcnow,
)
from harness.form_server import FormServer
from harness.processes import free_port
from harness.queue import QueueSetup

METRICS_TOKEN = "metrics-" + uuid.uuid4().hex
ELSEWHERE = "203.0.113.7"  # a client nginx would name in X-Real-IP

pytestmark = pytest.mark.queue_settings(
    trusted_proxies=["127.0.0.1"],  # the test plays nginx for the address checks
    metrics_token=METRICS_TOKEN,
    delivery_backoff_base_sec=3600,  # one post per result during the test
    wakeup_recent_sec=3600,  # a server that polled once stays "listening": no wake-up to it
    wakeup_timeout_sec=0.3,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def fresh_http() -> requests.Session:
    """A session that opens a new connection per request: any worker may answer it."""
    http = requests.Session()
    http.headers["Connection"] = "close"
    return http


def scrape(url: str, **headers: str) -> Samples:
    answer = requests.get(f"{url}/metrics", headers={"Connection": "close", **headers}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def of(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """One metric's non-zero values by label set."""
    return {labels: v for (n, labels), v in samples.items() if n == name and v}


class UdpListener:
    """A grading server's wake-up port: counts datagrams, answers ``ok`` if ``answer``."""

    def __init__(self, answer: bool) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.received = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                _data, sender = self.sock.recvfrom(256)
            except OSError:
                continue
            self.received += 1
            if self.answer:
                self.sock.sendto(b"ok", sender)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def listeners() -> Iterator[tuple[UdpListener, UdpListener]]:
    ok, silent = UdpListener(answer=True), UdpListener(answer=False)
    yield ok, silent
    ok.close()
    silent.close()


def settled(read: Callable[[], object], expected: Callable[[], object], timeout: float = 30):  # type: ignore[no-untyped-def]
    """Wait until ``read()`` equals ``expected()`` (both read again each time); then return it.

    Work after a commit (a wake-up thread, the delivery thread) ends a moment
    after the request that caused it: the bound is generous, the end exact.
    """
    deadline = time.monotonic() + timeout
    while True:
        got, want = read(), expected()
        if got == want or time.monotonic() > deadline:
            assert got == want
            return got
        time.sleep(0.2)


def workers_that_received(prom_dir: Path) -> set[str]:
    """The worker processes whose own file counts a received job."""
    pids = set()
    for path in prom_dir.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):
            if family.name == "graderqueue_jobs_received" and any(s.value for s in family.samples):
                pids.add(path.stem.removeprefix("counter_"))
    return pids


# -- what the database says ---------------------------------------------------------


def labelled(rows) -> dict[tuple[tuple[str, str], ...], float]:  # type: ignore[no-untyped-def]
    """(type or None, platform or None, count) rows as label sets."""
    found: Counter = Counter()
    for *labels, count in rows:
        if len(labels) == 2:
            found[(("platform", labels[1] or ""), ("type", labels[0] or ""))] += count
        else:
            found[(("platform", labels[0] or ""),)] += count
    return {k: float(v) for k, v in found.items() if v}


def db_counts(queue: QueueSetup) -> dict[str, dict]:
    """The counters' true values, counted independently from the tables."""
    job_platform = Job.__table__.outerjoin(Platform, Platform.id == Job.platform_id)
    by_server = (ServerType.name, Platform.name)
    handed = queue.rows(
        select(*by_server, func.count())
        .select_from(Handout)
        .join(Job, Job.id == Handout.job_id)
        .outerjoin(Platform, Platform.id == Job.platform_id)
        .join(Server, Server.id == Handout.server_id)
        .join(ServerType, ServerType.id == Server.type_id)
        .group_by(*by_server)
    )
    done = queue.rows(
        select(*by_server, func.count())
        .select_from(job_platform.join(Server, Server.id == Job.sent_to))
        .join(ServerType, ServerType.id == Server.type_id)
        .where(Job.status == JobStatus.DONE)
        .group_by(*by_server)
    )
    failed = queue.rows(
        select(*by_server, func.count())
        .select_from(Event)
        .join(Job, Job.id == Event.job_id)
        .outerjoin(Platform, Platform.id == Job.platform_id)
        .join(Server, Server.id == Event.server_id)
        .join(ServerType, ServerType.id == Server.type_id)
        .where(Event.kind == events.BAD_RESULT)
        .group_by(*by_server)
    )
    attempts = queue.rows(
        select(Platform.name, func.count())
        .select_from(DeliveryAttempt)
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .join(Platform, Platform.id == Delivery.platform_id)
        .group_by(Platform.name)
    )
    return {
        "graderqueue_jobs_received_total": labelled(
            queue.rows(
                select(Platform.name, func.count())
                .select_from(job_platform)
                .group_by(Platform.name)
            )
        ),
        "graderqueue_jobs_handed_out_total": labelled(handed),
        "graderqueue_jobs_completed_total": labelled(done),
        "graderqueue_jobs_failed_total": labelled(failed),
        "graderqueue_jobs_cancelled_total": labelled(
            queue.rows(
                select(Platform.name, func.count())
                .select_from(job_platform)
                .where(Job.status == JobStatus.CANCELLED)
                .group_by(Platform.name)
            )
        ),
        "graderqueue_delivery_attempts_total": labelled(attempts),
        "graderqueue_delivery_failures_total": labelled(attempts),  # the platform is down
    }


def first_handouts(queue: QueueSetup) -> float:
    return float(queue.scalar(select(func.count(func.distinct(Handout.job_id)))))


def waiting_by_type(queue: QueueSetup) -> dict[str, int]:
    rows = queue.rows(
        select(ServerType.name, func.count())
        .select_from(JobType)
        .join(ServerType, ServerType.id == JobType.type_id)
        .where(JobType.status == JobStatus.QUEUED)
        .group_by(ServerType.name)
    )
    return {"t-c": 0, "t-java": 0, **dict(rows)}


# -- the tests --------------------------------------------------------------------------


def do_work(queue: QueueSetup, url: str, prom_dir: Path) -> None:
    """Jobs from two platforms and an operator through both workers, graded, cancelled."""
    plat_a = queue.platform("plat-a")
    plat_b = queue.platform("plat-b", return_url=f"http://127.0.0.1:{free_port()}/down")
    grader = FormServer(url, queue.server_token("t-c"), session=fresh_http())
    assert grader.poll(nbtasks=0)["errorcode"] == 1  # registers it; nothing to do yet
    clients = [queue.client_for(p, url=url) for p in (plat_a, plat_b)]
    for client in clients:
        client.http = fresh_http()
    sent = 0
    # New connections land on either worker; go on until both have counted some.
    while sent < 8 or (len(workers_that_received(prom_dir)) < 2 and sent < 80):
        clients[sent % 2].sendjob({"taskPath": "/t"}, tags="c", jobusertaskid=f"j{sent}")
        sent += 1
    assert len(workers_that_received(prom_dir)) == 2, "every request went to one worker"
    with queue.db.transaction() as session:
        ops = api_callers.add_token(session, "ops", "write")
    api = fresh_http()
    api.headers["Authorization"] = f"Bearer {ops}"
    answer = api.post(f"{url}/api/v1/jobs", json=[job_body(), job_body()], timeout=30)
    assert answer.status_code == 201, answer.text
    for errorcode in (0, 2, 0, 0, 2, 0):  # four done, two sent back to the queue
        job = grader.claim()
        if errorcode == 0:
            grader.finish(job["jobid"])
        else:
            answer = grader.sendresults(str(job["jobid"]), {"errorcode": errorcode})
            assert answer["errormsg"] == "Resultdata received invalid.", answer
    grader.claim()  # held, not reported: the server is busy
    a_job = queue.scalar(
        select(Job.id).where(Job.status == JobStatus.QUEUED, Job.platform_id == plat_a.id).limit(1)
    )
    assert api.post(f"{url}/api/v1/jobs/{a_job}/cancel", timeout=30).status_code == 200
    by_filter = {"action": "cancel", "filter": {"platform": "plat-b", "state": "QUEUED"}}
    answer = api.post(f"{url}/api/v1/jobs/actions", json=by_filter, timeout=30)
    assert answer.status_code == 200 and answer.json()["changed"] > 0, answer.text


def job_body() -> dict:  # type: ignore[type-arg]
    return {"jobdata": {"taskPath": "/t"}, "tags": "c", "jobusertaskid": uuid.uuid4().hex}


def test_every_scrape_of_any_worker_counts_the_whole_queue(queue, tmp_path, listeners):
    ok, silent = listeners
    # Servers of t-java that never poll: each c job (t-c or t-java) wakes them over UDP.
    for name, port, serial in (("wake-ok", ok.port, "0A01"), ("wake-silent", silent.port, "0A02")):
        queue.cert_server(
            name, "t-java", serial, "CN=test CA", wakeup_url=f"udp://127.0.0.1:{port}"
        )
    prom_dir = tmp_path / "prom"
    url = queue.gunicorn(workers=2, threads=16, PROMETHEUS_MULTIPROC_DIR=str(prom_dir)).url
    do_work(queue, url, prom_dir)
    # The delivery threads post each result to the platform that is down, once.
    settled(
        lambda: queue.scalar(select(func.count()).select_from(DeliveryAttempt)),
        lambda: queue.scalar(select(func.count()).select_from(Delivery)),
    )
    assert ok.received > 0 and silent.received > 0

    def counters() -> dict:  # type: ignore[type-arg]
        samples = scrape(url)
        found = {name: of(samples, name) for name in db_counts(queue)}
        found["wakeups"] = (
            samples[("graderqueue_wakeups_sent_total", ())],
            samples[("graderqueue_wakeups_failed_total", ())],
        )
        return found

    def truth() -> dict:  # type: ignore[type-arg]
        return {**db_counts(queue), "wakeups": (ok.received + silent.received, silent.received)}

    settled(counters, truth)
    truth_now = db_counts(queue)
    completed = sum(truth_now["graderqueue_jobs_completed_total"].values())
    for _ in range(6):  # each on a new connection: either worker answers, all say the same
        samples = scrape(url)
        assert {name: of(samples, name) for name in truth_now} == truth_now
        assert of(samples, "graderqueue_dispatch_latency_seconds_count") == {
            (("type", "t-c"),): first_handouts(queue)
        }
        assert of(samples, "graderqueue_job_duration_seconds_count") == {
            (("type", "t-c"),): completed
        }
    queue_gauges_match_the_database(queue, url)


def queue_gauges_match_the_database(queue: QueueSetup, url: str) -> None:
    with queue.db.transaction() as session:
        operations.pause(session, "t-java", on=True, actor="test")
        grader = session.scalar(select(Server.name).where(Server.token_id.is_not(None)))
        operations.drain(session, grader, on=True, actor="test")
    samples = scrape(url)

    def gauge(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert gauge("graderqueue_database_up") == 1
    for type_name, count in waiting_by_type(queue).items():
        assert gauge("graderqueue_jobs_waiting", type=type_name) == count
    expected = {  # type: (registered, alive, busy, drained, grading, paused)
        "t-c": (1, 0, 1, 1, 1, 0),
        "t-java": (2, 0, 0, 0, 0, 1),
    }
    for type_name, figures in expected.items():
        assert (
            gauge("graderqueue_servers_registered", type=type_name),
            gauge("graderqueue_servers_alive", type=type_name),
            gauge("graderqueue_servers_busy", type=type_name),
            gauge("graderqueue_servers_drained", type=type_name),
            gauge("graderqueue_jobs_grading", type=type_name),
            gauge("graderqueue_dispatch_paused", type=type_name),
        ) == figures
    assert gauge("graderqueue_queue_paused") == 0
    with queue.db.reading() as session:
        wanted = autoscale.wanted_servers(session, queue.settings)
    for type_name, count in wanted.items():
        assert gauge("graderqueue_servers_wanted", type=type_name) == count
    pending = queue.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.state == DeliveryState.PENDING)
    )
    assert pending > 0
    assert gauge("graderqueue_deliveries_pending", platform="plat-b") == pending
    assert gauge("graderqueue_deliveries_pending", platform="plat-a") == 0
    oldest = queue.scalar(
        select(func.min(Job.received_time))
        .join(JobType, JobType.job_id == Job.id)
        .join(ServerType, ServerType.id == JobType.type_id)
        .where(JobType.status == JobStatus.QUEUED, ServerType.name == "t-c")
    )
    age = (utcnow() - oldest).total_seconds()
    assert 0 < gauge("graderqueue_oldest_waiting_seconds", type="t-c") <= age + 1
    assert gauge("graderqueue_oldest_waiting_seconds", type="t-c") > age - 60


def test_only_allowed_addresses_or_the_token_read_metrics(queue):
    url = queue.gunicorn(workers=2, threads=8).url

    def status(**headers: str) -> requests.Response:
        return requests.get(
            f"{url}/metrics", headers={"Connection": "close", **headers}, timeout=30
        )

    assert status().status_code == 200  # 127.0.0.1: in metrics_allow
    # Through "nginx" (a trusted proxy) for a client elsewhere: the token is needed.
    refused = status(**{"X-Real-IP": ELSEWHERE})
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "graderqueue_" not in refused.text
    wrong = status(**{"X-Real-IP": ELSEWHERE, "Authorization": f"Bearer {METRICS_TOKEN}x"})
    assert wrong.status_code == 401
    right = status(**{"X-Real-IP": ELSEWHERE, "Authorization": f"Bearer {METRICS_TOKEN}"})
    assert right.status_code == 200 and "graderqueue_jobs_waiting" in right.text


@pytest.mark.queue_settings(trusted_proxies=[], metrics_token="")
def test_behind_an_untrusted_proxy_the_address_proves_nothing(sqlite_queue, monkeypatch):
    """One process (no PROMETHEUS_MULTIPROC_DIR): the app counts in its own memory."""
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    client = sqlite_queue.app.test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}
    assert client.get("/metrics", environ_base=local).status_code == 200
    # nginx on this host, but not in trusted_proxies: the client's address is unknown.
    forwarded = client.get("/metrics", environ_base=local, headers={"X-Forwarded-For": ELSEWHERE})
    assert forwarded.status_code == 403  # no token configured: nothing else opens it
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def single_process_count(client, platform: str) -> float:  # type: ignore[no-untyped-def]
    answer = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for s in family.samples
    }
    return samples.get(("graderqueue_jobs_received_total", (("platform", platform),)), 0.0)


def test_one_process_without_a_multiprocess_directory_counts_too(sqlite_queue, monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    name = f"solo-{uuid.uuid4().hex[:8]}"  # other tests in this process count their own
    platform = sqlite_queue.platform(name)
    client = sqlite_queue.app.test_client()
    before = single_process_count(client, name)
    sqlite_queue.client_for(platform).sendjob({"taskPath": "/t"}, tags="c")
    sqlite_queue.client_for(platform).sendjob({"taskPath": "/t"}, tags="c")
    assert single_process_count(client, name) == before + 2


def readiness(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    answer = requests.get(f"{url}/readyz", headers={"Connection": "close"}, timeout=30)
    return answer.status_code, answer.json()


def test_readyz_checks_the_schema_and_the_keys(queue):
    url = queue.gunicorn(workers=2, threads=8).url
    assert readiness(url) == (200, {"ready": True, "checks": dict.fromkeys(CHECKS, True)})
    head = queue.scalar(text("SELECT version_num FROM alembic_version"))
    # The database another node upgraded (or an old backup): not this code's schema.
    with queue.db.transaction() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    assert readiness(url) == (503, {"ready": False, "checks": {**ALL_TRUE, "schema": False}})
    with queue.db.transaction() as session:
        session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert readiness(url)[0] == 200
    key = queue.settings.resolved_key_dir / f"{queue.settings.key_name}.pem"
    moved = key.with_suffix(".away")
    shutil.move(key, moved)
    try:
        assert readiness(url) == (503, {"ready": False, "checks": {**ALL_TRUE, "keys": False}})
    finally:
        shutil.move(moved, key)
    assert readiness(url)[0] == 200
    assert requests.get(f"{url}/healthz", timeout=30).status_code == 200


CHECKS = ("database", "schema", "keys")
ALL_TRUE = dict.fromkeys(CHECKS, True)
