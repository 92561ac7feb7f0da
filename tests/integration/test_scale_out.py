"""Two app nodes behind one nginx upstream, one shared MariaDB.

The way two machines would run the queue: two gunicorn instances on the
same database, nginx balancing platforms over both, grading servers polling
both. Every exclusive decision is the database's, so: no job is held by two
servers, none is lost, every result is stored once and delivered once, and a
job queued on one node reaches a poller waiting on the other through the
cross-node hint (the recheck is set far beyond the long-poll, so nothing
else could deliver it in time).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from graderqueue.protocol.keys import QueueKeys
from graderqueue.store.models import Job, JobStatus, Result, Server
from harness.form_server import FormServer
from harness.nginx import find_nginx
from harness.platform_endpoint import PlatformEndpoint
from harness.processes import Gunicorn, die_with_parent, free_port, wait_port
from harness.queue import PlatformIdentity, QueueSetup

pytestmark = pytest.mark.mariadb

JOBS = 40
POLLERS_PER_NODE = 2
POLL_WAIT_SEC = 4
RECHECK_SEC = 600  # far beyond the long-poll: only a hint can end a wait early


def nginx_conf(workdir: Path, port: int, upstreams: list[int]) -> Path:
    """A minimal plain-HTTP front with the proxy settings of examples/nginx/graderqueue.conf."""
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in upstreams)
    # As root nginx would switch to "nobody", who cannot enter pytest's temp folder.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(
        "daemon off;\nmaster_process on;\nworker_processes 1;\n"
        f"{user}pid {workdir / 'nginx.pid'};\nerror_log {workdir / 'error.log'} notice;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {workdir / 'access.log'};\n"
        f"    client_body_temp_path {tmp / 'body'};\n"
        f"    proxy_temp_path {tmp / 'proxy'};\n"
        f"    fastcgi_temp_path {tmp / 'fastcgi'};\n"
        f"    uwsgi_temp_path {tmp / 'uwsgi'};\n"
        f"    scgi_temp_path {tmp / 'scgi'};\n"
        "    upstream graderqueue_app {\n"
        f"{servers}"
        "        keepalive 16;\n"
        "    }\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        client_max_body_size 17m;\n"
        "        proxy_set_header Host $host;\n"
        "        proxy_set_header X-Real-IP $remote_addr;\n"
        "        proxy_set_header X-Forwarded-For $remote_addr;\n"
        '        proxy_set_header Connection "";\n'
        "        proxy_http_version 1.1;\n"
        "        proxy_read_timeout 90s;\n"
        "        location ~ ^/poll(\\.php)?$ {\n"
        "            proxy_buffering off;\n"
        "            proxy_pass http://graderqueue_app;\n"
        "        }\n"
        "        location / { proxy_pass http://graderqueue_app; }\n"
        "    }\n"
        "}\n"
    )
    return conf


@dataclass
class Cluster:
    queue: QueueSetup
    nodes: list[Gunicorn]
    front: str  # nginx, balancing over both nodes

    def platform_with_endpoint(self, name: str) -> tuple[PlatformIdentity, PlatformEndpoint]:
        port = free_port()
        platform = self.queue.platform(name, return_url=f"http://127.0.0.1:{port}/results")
        queue_key = QueueKeys(
            self.queue.settings.resolved_key_dir, self.queue.settings.key_name
        ).active
        endpoint = PlatformEndpoint(platform.private_pem, queue_key.public_pem, port=port)
        return platform, endpoint.start()


@pytest.fixture
def cluster(mariadb_url: str, tmp_path: Path) -> Iterator[Cluster]:
    nginx = find_nginx()
    queue = QueueSetup(
        tmp_path / "instance",
        mariadb_url,
        poll_wait_sec=POLL_WAIT_SEC,
        poll_recheck_sec=RECHECK_SEC,
    )
    queue.tag("c")
    queue.server_type("t-c", ["c"])
    proc: subprocess.Popen[bytes] | None = None
    try:
        nodes = [queue.gunicorn(workers=2, threads=16) for _ in range(2)]
        port = free_port()
        workdir = tmp_path / "nginx"
        conf = nginx_conf(workdir, port, [node.port for node in nodes])  # type: ignore[misc]
        proc = subprocess.Popen(
            [nginx, "-p", f"{workdir}/", "-c", str(conf), "-e", str(workdir / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        wait_port(port, 10, proc)
        yield Cluster(queue, nodes, f"http://127.0.0.1:{port}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        queue.close()


def _grade_until(server: FormServer, done: threading.Event, claims: list, lock) -> None:  # type: ignore[no-untyped-def]
    """An original-style grading server: poll, grade at once, report, poll again."""
    while not done.is_set():
        answer = server.poll(nbtasks=0)
        if answer["errorcode"] == 1:
            continue  # the long-poll ran out
        assert answer["errorcode"] == 0, answer
        jobid = answer["jobid"]
        with lock:
            claims.append((jobid, server.url))
        server.finish(jobid, {"graded": answer["jobdata"]["n"]})


def test_two_nodes_behind_nginx(cluster: Cluster) -> None:
    """One cluster for both checks: starting it is most of the test's time."""
    a_job_sent_to_one_node_reaches_a_poller_waiting_on_the_other(cluster)
    each_job_is_held_stored_and_delivered_once(cluster)


def a_job_sent_to_one_node_reaches_a_poller_waiting_on_the_other(cluster: Cluster) -> None:
    queue = cluster.queue
    node_a, node_b = cluster.nodes
    platform = queue.platform("direct")
    server = FormServer(node_a.url, queue.server_token("t-c"))
    answers: list[dict] = []
    poller = threading.Thread(target=lambda: answers.append(server.poll(nbtasks=0)))
    poller.start()
    # The poll's first transaction records its time and finds the queue empty;
    # from then on only a hint (or the recheck, RECHECK_SEC away) ends the wait.
    deadline = time.monotonic() + 20
    while not queue.rows(select(Server.id).where(Server.last_poll_time.is_not(None))):
        assert time.monotonic() < deadline, "the poll on node A never started"
        time.sleep(0.02)
    jobid = queue.client_for(platform, url=node_b.url).sendjob({"n": -1}, tags="c")
    poller.join(POLL_WAIT_SEC + 10)
    assert answers and answers[0]["errorcode"] == 0, (
        f"a job queued on node B did not reach the poll waiting on node A: {answers}"
    )
    assert answers[0]["jobid"] == jobid
    server.finish(jobid, {"graded": -1})


def each_job_is_held_stored_and_delivered_once(cluster: Cluster) -> None:
    queue = cluster.queue
    platform, endpoint = cluster.platform_with_endpoint("balanced")
    try:
        claims: list[tuple[int, str]] = []
        lock = threading.Lock()
        done = threading.Event()
        pollers = [
            threading.Thread(
                target=_grade_until,
                args=(FormServer(node.url, queue.server_token("t-c")), done, claims, lock),
                daemon=True,
            )
            for node in cluster.nodes
            for _ in range(POLLERS_PER_NODE)
        ]
        for poller in pollers:
            poller.start()
        # Platforms submit through nginx, from several threads at once.
        sent: list[int] = []

        def submit(first: int) -> None:
            client = queue.client_for(platform, url=cluster.front)
            for n in range(first, JOBS, 3):
                jobid = client.sendjob({"n": n}, tags="c", jobusertaskid=f"sub-{n}")
                with lock:
                    sent.append(jobid)

        submitters = [threading.Thread(target=submit, args=(i,)) for i in range(3)]
        for thread in submitters:
            thread.start()
        for thread in submitters:
            thread.join(60)
        assert sorted(sent) == sorted(set(sent)) and len(sent) == JOBS

        accepted = endpoint.wait_accepted(JOBS, timeout=60)
        done.set()
        for poller in pollers:
            poller.join(POLL_WAIT_SEC + 10)

        held = Counter(jobid for jobid, _ in claims)
        assert sorted(held) == sorted(sent), "a job was lost or an unknown one handed out"
        assert max(held.values()) == 1, f"jobs held twice: {[j for j, c in held.items() if c > 1]}"
        assert {node for _, node in claims} == {node.url for node in cluster.nodes}
        statuses = queue.rows(select(Job.status).where(Job.id.in_(sent)))
        assert Counter(s for (s,) in statuses) == Counter({JobStatus.DONE: JOBS})
        results = queue.rows(select(Result.job_id).where(Result.job_id.in_(sent)))
        assert sorted(r for (r,) in results) == sorted(sent), "a result was lost or stored twice"
        # Give a duplicate delivery the time to show up, then count.
        time.sleep(1)
        graded = Counter(p["sResultData"]["graded"] for p in endpoint.accepted)
        assert len(endpoint.accepted) == len(accepted) == JOBS
        assert graded == Counter(range(JOBS)), "a result was delivered twice or never"
        # nginx spread the platforms' requests over both nodes.
        for node in cluster.nodes:
            assert "/api.php" in node.log_text(), f"nginx sent no sendjob to {node.url}"
    finally:
        endpoint.stop()
