"""The example nginx (examples/nginx/graderqueue.conf) throttles what is costly
and shields gunicorn from slow clients.

A real nginx with the example file, in front of the real app under gunicorn
started with examples/gunicorn.conf.py:

- a platform flooding /api.php (where an rRequest costs a password hash)
  gets nginx's HTTP 429 past the burst, while a grading server's poll from
  the same address still gets its job (issue 11, item 10);
- the admin login form is throttled the same way;
- slow clients (slowloris: headers or a body a byte at a time) hold nginx
  connections, not gunicorn's few threads: the app keeps answering.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from harness.certs import PKI, ScriptError, make_pki
from harness.nginx import NginxProcess, start_nginx
from harness.queue import PlatformIdentity, QueueSetup

# Enough requests that even a slow machine exceeds 20 r/s plus the burst of
# 100 (the config's numbers) long before the end; the loop stops at the
# first 429, so a fast machine sends about 120.
MAX_FLOOD = 1000


@dataclass
class Site:
    queue: QueueSetup
    nginx: NginxProcess
    pki: PKI
    platform: PlatformIdentity

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.pki.ca_crt)
        session.trust_env = False
        return session


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("limits")
    try:
        pki = make_pki(tmp / "pki", n_clients=1)
    except ScriptError as exc:  # no openssl
        pytest.skip(str(exc))
    queue = QueueSetup(tmp / "instance", poll_wait_sec=2)
    try:
        queue.tag("c")
        queue.server_type("t-c", ["c"])
        platform = queue.platform("platform1")
        grader = pki.client("grader-1")
        queue.cert_server("grader-1", "t-c", grader.serial, grader.issuer_dn)
        # Few threads: slow clients would exhaust them if they got through.
        server = queue.gunicorn(workers=1, threads=4, GRADERQUEUE_TRUSTED_PROXIES="127.0.0.1")
        nginx = start_nginx(tmp, server.port, pki)
        try:
            yield Site(queue, nginx, pki, platform)
        finally:
            nginx.stop()
    finally:
        queue.close()


def flood(site: Site, method: str, path: str, data: dict[str, str] | None = None) -> list[int]:
    """Send requests until nginx refuses one (or MAX_FLOOD); the status codes seen.

    The requests are cheap for the app (no password to check), so that the
    flood is fast whatever the machine: the limit is on the location.
    """
    statuses = []
    with site.session() as session:
        for _ in range(MAX_FLOOD):
            response = session.request(method, site.nginx.url(path), data=data, timeout=30)
            statuses.append(response.status_code)
            if response.status_code != 200:
                break
    return statuses


def test_a_flood_on_api_gets_429_while_a_grading_server_still_polls(site: Site) -> None:
    client_jobs = site.queue.client_for(site.platform)
    jobid = client_jobs.sendjob({"taskPath": "/t"}, tags="c")

    statuses = flood(site, "POST", "/api.php", {"request": "test"})
    # The burst passes (the app answers with HTTP 200), then nginx refuses.
    assert statuses[-1] == 429, statuses[-5:]
    assert len(statuses) > 100 and set(statuses[:-1]) == {200}, len(statuses)
    # The clean path shares the limit.
    assert flood(site, "POST", "/api", {"request": "test"})[-1] == 429

    # Same address, a grading server's paths: not limited.
    grader = site.pki.client("grader-1").requests_cert
    with site.session() as session:
        for _ in range(3):
            tested = session.post(site.nginx.url("/test.php"), cert=grader, timeout=30)
            assert tested.status_code == 200 and tested.json()["errorcode"] == 0, tested.text
        polled = session.post(
            site.nginx.url("/poll.php"), data={"nbtasks": "0"}, cert=grader, timeout=30
        )
    assert polled.status_code == 200, polled.text
    assert polled.json()["jobid"] == jobid, polled.text
    log = site.nginx.site_error_log.read_text(errors="replace")
    assert "limiting requests, excess" in log and 'zone "graderqueue_api"' in log


def test_the_admin_login_form_is_throttled(site: Site) -> None:
    statuses = flood(site, "GET", "/admin/login")
    assert statuses[-1] == 429, statuses[-5:]
    assert len(statuses) > 10


def test_slow_clients_hold_nginx_not_gunicorn(site: Site) -> None:
    """More half-sent requests than gunicorn has threads: the app still answers.

    nginx reads a request whole before it opens a connection to gunicorn, so
    these never reach it (gunicorn itself has no timeout for a slow request).
    """
    context = ssl.create_default_context(cafile=str(site.pki.ca_crt))
    slow: list[ssl.SSLSocket] = []
    try:
        for index in range(12):
            raw = socket.create_connection(("127.0.0.1", site.nginx.port), timeout=30)
            conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
            if index % 2:  # headers never finished
                conn.sendall(b"POST /api.php HTTP/1.1\r\nHost: queue.test\r\nX-a: ")
            else:  # a body that never comes
                conn.sendall(
                    b"POST /api.php HTTP/1.1\r\nHost: queue.test\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: 100000\r\n\r\nrequest=te"
                )
            slow.append(conn)
        grader = site.pki.client("grader-1").requests_cert
        with site.session() as session:
            for _ in range(8):  # twice gunicorn's threads
                tested = session.post(site.nginx.url("/test.php"), cert=grader, timeout=30)
                assert tested.status_code == 200 and tested.json()["errorcode"] == 0
    finally:
        for conn in slow:
            conn.close()
