"""The whole perimeter: real nginx (examples/nginx/graderqueue.conf) with
certificates made by certs/, in front of the real app under gunicorn, which
trusts nginx's address (127.0.0.1) and nothing else.

A grading server with a client certificate registered from what
make-client-cert.sh printed polls through nginx and gets its job; without a
certificate, with one from another CA, with one of ours that is not
registered, or with forged headers, it gets nothing (errorcode 3, or nginx's
own HTTP 400 for a certificate it does not trust) and nothing changes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import delete

from graderqueue.client import PlatformClient
from graderqueue.store.models import Server
from harness import ROOT
from harness.certs import PKI, ClientCert, ScriptError, make_pki
from harness.nginx import NginxProcess, start_nginx
from harness.processes import Gunicorn, run_cli
from harness.queue import PlatformIdentity, QueueSetup

AUTH_FAILED = {"errorcode": 3, "errormsg": "No valid authentication provided."}


@dataclass
class Perimeter:
    queue: QueueSetup
    gunicorn: Gunicorn
    nginx: NginxProcess
    pki: PKI
    platform: PlatformIdentity
    tmp: Path

    def url(self, path: str) -> str:
        return self.nginx.url(path)

    def client(self) -> PlatformClient:
        """The platform, over HTTPS through nginx (no client certificate)."""
        session = requests.Session()
        session.verify = str(self.pki.ca_crt)
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        key_dir, kid = self.queue.settings.resolved_key_dir, self.queue.settings.key_name
        return PlatformClient(
            self.nginx.base_url,
            self.platform.name,
            self.platform.private_pem,
            (key_dir / f"{kid}.pub.pem").read_text(),
            kid,
            session=session,
        )

    def post(
        self,
        path: str,
        data: dict[str, str] | None = None,
        cert: ClientCert | tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        if isinstance(cert, ClientCert):
            cert = cert.requests_cert
        return requests.post(
            self.url(path),
            data=data or {},
            cert=cert,
            headers=headers or {},
            verify=str(self.pki.ca_crt),
            timeout=30,
        )

    def answer(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
        response = self.post(path, data, **kw)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def perimeter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Perimeter]:
    tmp = tmp_path_factory.mktemp("perimeter")
    try:
        pki = make_pki(tmp / "pki", n_clients=3)
    except ScriptError as exc:  # no openssl
        pytest.skip(str(exc))
    queue = QueueSetup(tmp / "instance", poll_wait_sec=2)
    try:
        queue.tag("c", "daemon")
        queue.server_type("t-c", ["c"])
        queue.server_type("t-daemon", ["daemon"])
        platform = queue.platform("platform1")
        # Registered exactly as the operator would, from the script's printed line.
        one, three = pki.client("grader-1"), pki.client("grader-3")
        queue.cert_server("grader-1", "t-c", one.serial, one.issuer_dn)
        queue.cert_server("grader-3", "t-daemon", three.serial, three.issuer_dn)
        server = queue.gunicorn(workers=2, threads=8, GRADERQUEUE_TRUSTED_PROXIES="127.0.0.1")
        nginx = start_nginx(tmp, server.port, pki)
        try:
            yield Perimeter(queue, server, nginx, pki, platform, tmp)
        finally:
            nginx.stop()
    finally:
        queue.close()


JOB = {"taskPath": "/tasks/add", "extraParams": {"solutionLanguage": "c"}}


def test_a_registered_grading_server_gets_its_job_through_nginx(perimeter: Perimeter) -> None:
    client = perimeter.client()
    jobid = client.sendjob(JOB, tags="c", jobname="through-nginx")
    grader = perimeter.pki.client("grader-1")

    tested = perimeter.answer("/test.php", cert=grader)
    assert tested["errorcode"] == 0
    assert tested["errormsg"].startswith("Connected as server grader-1 ")

    polled = perimeter.answer("/poll.php", {"nbtasks": "0"}, cert=grader)
    assert polled["errorcode"] == 0, polled
    assert (polled["jobid"], polled["jobname"], polled["jobdata"]) == (jobid, "through-nginx", JOB)

    result = {"errorcode": 0, "errormsg": "ok", "jobdata": {"executions": []}}
    saved = perimeter.answer(
        "/sendresults.php",
        {"jobid": str(jobid), "resultdata": json.dumps(result)},
        cert=(str(grader.pem), str(grader.pem)),  # the combined file works too
    )
    assert saved == {"errorcode": 0, "errormsg": "Saved resultdata."}
    done = client.getjob(jobid)
    assert done["origin"] == "done"
    assert json.loads(done["data"]["resultdata"]) == result


def test_the_real_graderserver_grades_through_nginx_with_its_certificate(
    perimeter: Perimeter,
) -> None:
    grader = perimeter.pki.client("grader-3")
    jobids = [perimeter.client().sendjob(JOB, tags="daemon", jobname=f"d{i}") for i in range(2)]
    config = perimeter.tmp / "graderserver.toml"
    config.write_text(
        "[queue]\n"
        f"url = {json.dumps(perimeter.nginx.base_url + '/')}\n"
        f"cert = {json.dumps(str(grader.crt))}\n"
        f"key = {json.dumps(str(grader.key))}\n"
        f"ca = {json.dumps(str(perimeter.pki.ca_crt))}\n"
        "request_timeout = 30\n"
        "[program]\n"
        'command = ["cat"]\n'
        "timeout = 20\n"
        "[paths]\n"
        'root = "/srv/grading"\n'
        "[wakeup]\n"
        'host = "127.0.0.1"\n'
        "port = 0\n"
    )
    env = {"PYTHONPATH": str(ROOT), "GRADERSERVER_CONFIG": None}
    tested = run_cli(["-c", str(config), "-t"], env=env, module="graderserver", check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    graded = run_cli(["-c", str(config), "--once"], env=env, module="graderserver", check=False)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    for jobid in jobids:
        row = perimeter.client().getjob(jobid)["data"]
        assert row["status"] == "done", row
        assert json.loads(row["resultdata"])["errorcode"] == 0


def refused_without_change(perimeter: Perimeter, **kw: Any) -> None:
    """poll, test and sendresults all answer errorcode 3 and change nothing."""
    jobid = perimeter.client().sendjob(JOB, tags="c")
    before = perimeter.queue.snapshot()
    for path, data in [
        ("/poll.php", {"nbtasks": "0"}),
        ("/poll", {}),
        ("/test.php", {}),
        ("/sendresults.php", {"jobid": str(jobid), "resultdata": '{"errorcode": 0}'}),
    ]:
        assert perimeter.answer(path, data, **kw) == AUTH_FAILED, (path, kw)
    assert perimeter.queue.snapshot() == before
    drain(perimeter)


def drain(perimeter: Perimeter) -> None:
    """Hand the t-c jobs left by a refusal test to grader-1, so the next test starts clean."""
    grader = perimeter.pki.client("grader-1")
    while True:
        polled = perimeter.answer("/poll.php", {"nbtasks": "0"}, cert=grader)
        if polled["errorcode"] != 0:
            return
        result = json.dumps({"errorcode": 0, "jobdata": {}})
        data = {"jobid": str(polled["jobid"]), "resultdata": result}
        assert perimeter.answer("/sendresults.php", data, cert=grader)["errorcode"] == 0


def test_no_certificate_gets_nothing(perimeter: Perimeter) -> None:
    refused_without_change(perimeter)


def test_a_certificate_of_our_ca_that_is_not_registered_gets_nothing(
    perimeter: Perimeter,
) -> None:
    refused_without_change(perimeter, cert=perimeter.pki.client("grader-2"))


FORGED = {
    "X-SSL-Client-Verify": "SUCCESS",
    "X-SSL-Client-Serial": "",  # filled in with grader-1's serial
    "X-SSL-Client-I-DN": "",
    "X_SSL_Client_Verify": "SUCCESS",
    "X-Real-IP": "203.0.113.66",
    "X-Forwarded-For": "203.0.113.66",
}


def forged_as(cert: ClientCert) -> dict[str, str]:
    headers = dict(FORGED)
    headers["X-SSL-Client-Serial"] = cert.serial
    headers["X-SSL-Client-I-DN"] = cert.issuer_dn
    headers["X_SSL_Client_Serial"] = cert.serial
    return headers


def test_forged_certificate_headers_through_nginx_get_nothing(perimeter: Perimeter) -> None:
    """nginx replaces whatever X-SSL-Client-* the client sent, with or without a certificate."""
    victim = perimeter.pki.client("grader-1")
    refused_without_change(perimeter, headers=forged_as(victim))
    # Holding a valid but unregistered certificate does not help either.
    refused_without_change(
        perimeter, cert=perimeter.pki.client("grader-2"), headers=forged_as(victim)
    )


def test_a_certificate_from_another_ca_never_reaches_the_app(perimeter: Perimeter) -> None:
    """Same CA name, other key: nginx answers 400 itself (optional verification)."""
    intruder = perimeter.pki.foreign_client
    assert intruder.issuer_dn == perimeter.pki.client("grader-1").issuer_dn
    jobid = perimeter.client().sendjob(JOB, tags="c")
    before = perimeter.queue.snapshot()
    access_before = perimeter.gunicorn.log_text().count("/poll.php")
    for path in ("/poll.php", "/test.php", "/sendresults.php"):
        data = {"nbtasks": "0", "jobid": str(jobid), "resultdata": "{}"}
        response = perimeter.post(path, data, cert=intruder, headers=forged_as(intruder))
        assert response.status_code == 400, response.text
        assert "The SSL certificate error" in response.text
    assert perimeter.gunicorn.log_text().count("/poll.php") == access_before
    assert perimeter.queue.snapshot() == before
    drain(perimeter)


def test_a_server_token_through_nginx_registers_the_real_address(perimeter: Perimeter) -> None:
    """The app takes the client address from nginx, which overwrites a forged one."""
    token = perimeter.queue.server_token("t-c", name="cloud")
    try:
        tested = perimeter.answer(
            "/test.php", {"server_token": token}, headers={"X-Real-IP": "203.0.113.66"}
        )
        assert tested["errormsg"].startswith("Connected as server cloud-127.0.0.1 "), tested
    finally:
        # The server it registered has a wake-up address (udp://127.0.0.1:20000)
        # where nobody listens: left in place, every later t-c job would start
        # a wake-up that fails a second later and updates its row, in the
        # middle of another test's before/after snapshots.
        with perimeter.queue.db.transaction() as session:
            session.execute(delete(Server).where(Server.name == "cloud-127.0.0.1"))


def test_straight_to_gunicorn_the_same_forgery_works_only_from_the_trusted_address(
    perimeter: Perimeter,
) -> None:
    """Why gunicorn must listen only where nginx alone can reach it.

    This gunicorn trusts 127.0.0.1, the address nginx connects from, so a
    local process that bypasses nginx is believed: the control for the
    nginx tests above. tests/integration/test_security_auth.py shows that a
    gunicorn trusting no proxy or another address believes no one.
    """
    victim = perimeter.pki.client("grader-1")
    headers = {
        "X-SSL-Client-Verify": "SUCCESS",
        "X-SSL-Client-Serial": victim.serial,
        "X-SSL-Client-I-DN": victim.issuer_dn,
    }
    response = requests.post(perimeter.gunicorn.url + "/test.php", headers=headers, timeout=10)
    assert response.json()["errormsg"].startswith("Connected as server grader-1 ")


def test_the_platform_api_works_through_nginx_without_a_certificate(perimeter: Perimeter) -> None:
    client = perimeter.client()
    assert client.test() == f"Connected as platform id {perimeter.platform.id}"
    # And a bad token through nginx is the same protocol refusal as without it.
    answer = perimeter.answer("/api.php", {"sToken": "x.y.z.w.v", "sPlatform": "platform1"})
    assert answer["errorcode"] == 2


def test_a_head_request_to_poll_claims_nothing(perimeter: Perimeter) -> None:
    # A HEAD answer has no body: a job claimed for it would be held by a
    # server that never learnt of it until its lease ran out.
    perimeter.client().sendjob(JOB, tags="c")
    grader = perimeter.pki.client("grader-1")
    before = perimeter.queue.snapshot()
    response = requests.head(
        perimeter.url("/poll.php"),
        cert=grader.requests_cert,
        verify=str(perimeter.pki.ca_crt),
        timeout=30,
    )
    assert response.status_code == 200
    assert perimeter.queue.snapshot() == before
    drain(perimeter)


def test_a_result_over_the_app_limit_gets_the_protocol_answer_through_nginx(
    perimeter: Perimeter,
) -> None:
    # nginx's own limit sits above the app's, so the grading server reads a
    # JSON errorcode 2, not an HTTP 413 it would take for a network fault.
    grader = perimeter.pki.client("grader-1")
    before = perimeter.queue.snapshot()
    big = {"jobid": "1", "resultdata": "x" * (16 * 1024 * 1024 + 10)}
    answer = perimeter.answer("/sendresults.php", big, cert=grader)
    assert answer == {"errorcode": 2, "errormsg": "Request too large."}
    assert perimeter.queue.snapshot() == before


def test_the_curl_an_operator_would_use(perimeter: Perimeter) -> None:
    """docs/SECURITY.md's check, with curl: a certificate in, errorcode 0 out."""
    grader = perimeter.pki.client("grader-1")
    command = [
        "curl",
        "-sS",
        "--cacert",
        str(perimeter.pki.ca_crt),
        "--cert",
        str(grader.crt),
        "--key",
        str(grader.key),
        "-d",
        "",
        perimeter.url("/test.php"),
    ]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    except FileNotFoundError:
        pytest.skip("curl is not installed")
    assert json.loads(out.stdout)["errorcode"] == 0
