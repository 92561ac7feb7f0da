"""The security perimeter without the queue: real nginx, real certificates.

nginx runs ``examples/nginx/graderqueue.conf`` (only paths and ports
replaced) with certificates made by the ``certs/`` scripts, in front of a
tiny upstream that answers with the request it received. So these tests
show exactly what the app would be told: that a certificate from our CA
arrives as SUCCESS with the serial and issuer DN that make-client-cert.sh
printed, that no certificate arrives as NONE, that a certificate nginx does
not trust never reaches the app, and that a client cannot smuggle its own
X-SSL-Client-* (or forwarding) headers through.
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from harness.certs import (
    PKI,
    ClientCert,
    ScriptError,
    make_client,
    make_pki,
    run_script,
)
from harness.nginx import NginxProcess, start_nginx

# --- a real upstream that reports what it received ------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def one(self, name: str) -> str:
        values = self.values(name)
        assert len(values) == 1, f"{name}: expected one value, got {values}"
        return values[0]


@dataclass
class EchoUpstream:
    """HTTP/1.1 server on 127.0.0.1 answering each request with it as JSON."""

    server: http.server.ThreadingHTTPServer
    seen: list[Seen] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.server_address[1]


def _handler(upstream: EchoUpstream) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # nginx keeps upstream connections alive

        def _echo(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(self.command, self.path, list(self.headers.items()), body)
            upstream.seen.append(seen)
            answer = json.dumps(
                {
                    "method": seen.method,
                    "path": seen.path,
                    "headers": seen.headers,
                    "body_length": len(body),
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = _echo

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def upstream() -> Iterator[EchoUpstream]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    echo = EchoUpstream(server)
    server.RequestHandlerClass = _handler(echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield echo
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"), n_clients=2)


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, upstream: EchoUpstream, pki: PKI
) -> Iterator[NginxProcess]:
    proc = start_nginx(tmp_path_factory.mktemp("nginx"), upstream.port, pki)
    yield proc
    proc.stop()


def _seen(response: requests.Response) -> Seen:
    assert response.status_code == 200, response.text
    data = response.json()
    return Seen(data["method"], data["path"], [tuple(h) for h in data["headers"]], b"")


# --- raw HTTPS, for headers requests would merge or refuse ----------------


def _tls_context(pki: PKI, client: ClientCert | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_crt))
    if client is not None:
        context.load_cert_chain(str(client.crt), str(client.key))
    return context


def raw_request(
    nginx: NginxProcess,
    pki: PKI,
    client: ClientCert | None,
    head: list[str],
    body: bytes = b"",
) -> tuple[int, bytes]:
    """Send ``head`` lines verbatim over TLS; return (status, body)."""
    context = _tls_context(pki, client)
    with (
        socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(("\r\n".join([*head, "Connection: close", "", ""])).encode() + body)
        # Read by Content-Length: after an early error answer (413) nginx
        # keeps the connection open a while for the body it refused.
        response = http.client.HTTPResponse(tls)
        response.begin()
        return response.status, response.read()


# --- the scripts ------------------------------------------------------------

_SERIAL_RE = re.compile(r"^[1-7][0-9A-F]{31}$")


def test_client_script_prints_server_add_arguments(pki: PKI) -> None:
    for client in pki.clients:
        assert _SERIAL_RE.match(client.serial), client.serial
        assert client.issuer_dn == "CN=graderqueue test CA,O=graderqueue"
        assert client.server_add_args == (
            f"--ssl-serial {client.serial} --ssl-dn 'CN=graderqueue test CA,O=graderqueue'"
        )
    assert len({c.serial for c in pki.clients}) == len(pki.clients)


def test_private_keys_are_private(pki: PKI) -> None:
    keys = [pki.ca_key, pki.server_key]
    keys += [c.key for c in pki.clients] + [c.pem for c in pki.clients]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_certificates_have_the_right_purposes(pki: PKI) -> None:
    def text(cert: Path) -> str:
        return subprocess.run(
            ["openssl", "x509", "-in", str(cert), "-noout", "-text"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    ca = text(pki.ca_crt)
    assert "CA:TRUE" in ca
    server = text(pki.server_crt)
    assert "TLS Web Server Authentication" in server
    assert "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1" in server
    client = text(pki.clients[0].crt)
    assert "TLS Web Client Authentication" in client
    assert "TLS Web Server Authentication" not in client
    assert "CA:FALSE" in client
    pem = pki.clients[0].pem.read_text()
    assert "BEGIN CERTIFICATE" in pem
    assert "PRIVATE KEY" in pem


def test_scripts_refuse_to_overwrite(pki: PKI) -> None:
    before = pki.ca_crt.read_bytes()
    with pytest.raises(ScriptError, match="already exists"):
        run_script("make-ca.sh", pki.dir)
    with pytest.raises(ScriptError, match="already exists"):
        run_script("make-server-cert.sh", pki.dir, "localhost")
    with pytest.raises(ScriptError, match="already exists"):
        make_client(pki.dir, pki.clients[0].name)
    assert pki.ca_crt.read_bytes() == before


def test_scripts_reject_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="no CA"):
        run_script("make-client-cert.sh", tmp_path, "grader")
    run_script("make-ca.sh", tmp_path)
    with pytest.raises(ScriptError, match="NAME must be"):
        run_script("make-client-cert.sh", tmp_path, "../escape")
    with pytest.raises(ScriptError, match="neither an IP address nor a DNS name"):
        run_script("make-server-cert.sh", tmp_path, "bad name")
    assert not (tmp_path / "server.crt").exists()


# --- through nginx ----------------------------------------------------------


def test_client_cert_from_our_ca_reaches_app_with_printed_serial_and_dn(
    nginx: NginxProcess, pki: PKI
) -> None:
    for client in pki.clients:
        response = requests.get(
            nginx.url("/poll.php"), cert=client.requests_cert, verify=str(pki.ca_crt), timeout=10
        )
        seen = _seen(response)
        assert seen.one("X-SSL-Client-Verify") == "SUCCESS"
        assert seen.one("X-SSL-Client-Serial") == client.serial
        assert seen.one("X-SSL-Client-I-DN") == client.issuer_dn


def test_combined_pem_works_as_client_cert(nginx: NginxProcess, pki: PKI) -> None:
    client = pki.clients[1]
    response = requests.get(
        nginx.url("/test.php"), cert=str(client.pem), verify=str(pki.ca_crt), timeout=10
    )
    seen = _seen(response)
    assert seen.one("X-SSL-Client-Verify") == "SUCCESS"
    assert seen.one("X-SSL-Client-Serial") == client.serial


def test_no_client_cert_reaches_app_as_none(nginx: NginxProcess, pki: PKI) -> None:
    response = requests.post(
        nginx.url("/api.php"), data={"sToken": "x"}, verify=str(pki.ca_crt), timeout=10
    )
    seen = _seen(response)
    assert seen.one("X-SSL-Client-Verify") == "NONE"
    assert seen.values("X-SSL-Client-Serial") == []
    assert seen.values("X-SSL-Client-I-DN") == []


def test_cert_from_foreign_ca_is_refused_by_nginx(
    nginx: NginxProcess, pki: PKI, upstream: EchoUpstream
) -> None:
    """What nginx does with ``ssl_verify_client optional`` and an untrusted cert.

    The foreign CA has our CA's very name, so only the signature differs.
    nginx completes the TLS handshake, then answers HTTP 400 "The SSL
    certificate error" itself: the app never sees the request.
    """
    intruder = pki.foreign_client
    assert intruder.issuer_dn == pki.clients[0].issuer_dn
    before = len(upstream.seen)
    response = requests.get(
        nginx.url("/poll.php"), cert=intruder.requests_cert, verify=str(pki.ca_crt), timeout=10
    )
    assert response.status_code == 400
    assert "The SSL certificate error" in response.text
    assert len(upstream.seen) == before


def test_server_cert_is_not_a_client_cert(
    nginx: NginxProcess, pki: PKI, upstream: EchoUpstream
) -> None:
    """Signed by our CA but without clientAuth: nginx refuses it too."""
    before = len(upstream.seen)
    response = requests.get(
        nginx.url("/poll.php"),
        cert=(str(pki.server_crt), str(pki.server_key)),
        verify=str(pki.ca_crt),
        timeout=10,
    )
    assert response.status_code == 400
    assert len(upstream.seen) == before


FORGED = [
    "X-SSL-Client-Verify: SUCCESS",
    "X-SSL-Client-Serial: 01",
    "X-SSL-Client-I-DN: CN=graderqueue test CA,O=graderqueue",
    "x-ssl-client-verify: SUCCESS",
    "X-Ssl-Client-Serial: 02",
    "X_SSL_Client_Verify: SUCCESS",
    "X_SSL_CLIENT_SERIAL: 03",
    "X-SSL_Client-I_DN: CN=evil",
    "X-Forwarded-For: 203.0.113.66",
    "X-Real-IP: 203.0.113.66",
    "X_Real_IP: 203.0.113.66",
    "X-Forwarded-Proto: http",
    "X-Forwarded-Host: evil.example",
    "X-Forwarded-Port: 1",
    "X-Forwarded-Prefix: /evil",
    "Forwarded: for=203.0.113.66;proto=http",
]


def _assert_no_forgery(seen: Seen) -> None:
    for name, value in seen.headers:
        assert "_" not in name, f"header with underscore passed: {name}: {value}"
        assert "203.0.113.66" not in value
        assert "evil" not in value.lower()
    for name in ("X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix", "Forwarded"):
        assert seen.values(name) == [], name
    assert seen.one("X-Forwarded-For") == "127.0.0.1"
    assert seen.one("X-Real-IP") == "127.0.0.1"
    assert seen.one("X-Forwarded-Proto") == "https"


@pytest.mark.parametrize("with_cert", [True, False], ids=["our-cert", "no-cert"])
def test_forged_headers_never_reach_app(
    nginx: NginxProcess, pki: PKI, upstream: EchoUpstream, with_cert: bool
) -> None:
    client = pki.clients[0] if with_cert else None
    body = b"nbtasks=0"
    head = [
        "POST /poll.php HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(body)}",
        *FORGED,
    ]
    status, payload = raw_request(nginx, pki, client, head, body)
    assert status == 200, payload
    seen = upstream.seen[-1]
    assert seen.body == body
    _assert_no_forgery(seen)
    if client is not None:
        assert seen.one("X-SSL-Client-Verify") == "SUCCESS"
        assert seen.one("X-SSL-Client-Serial") == client.serial
        assert seen.one("X-SSL-Client-I-DN") == client.issuer_dn
    else:
        assert seen.one("X-SSL-Client-Verify") == "NONE"
        assert seen.values("X-SSL-Client-Serial") == []
        assert seen.values("X-SSL-Client-I-DN") == []


@pytest.mark.parametrize(
    "path",
    ["/api.php", "/api", "/poll.php", "/poll", "/sendresults.php", "/sendresults", "/test.php"],
)
def test_php_and_clean_paths_both_reach_app(nginx: NginxProcess, pki: PKI, path: str) -> None:
    response = requests.post(
        nginx.url(path),
        data={"jobid": "1", "resultdata": "{}"},
        cert=pki.clients[0].requests_cert,
        verify=str(pki.ca_crt),
        timeout=10,
    )
    seen = _seen(response)
    assert (seen.method, seen.path) == ("POST", path)
    assert seen.one("X-SSL-Client-Verify") == "SUCCESS"


def test_request_body_is_limited(nginx: NginxProcess, pki: PKI, upstream: EchoUpstream) -> None:
    before = len(upstream.seen)
    head = [
        "POST /api.php HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {17 * 1024 * 1024 + 1}",
    ]
    status, _ = raw_request(nginx, pki, None, head)
    assert status == 413
    assert len(upstream.seen) == before

    body = b"a=" + b"x" * (2 * 1024 * 1024)
    response = requests.post(
        nginx.url("/api.php"),
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        verify=str(pki.ca_crt),
        timeout=30,
    )
    assert response.json()["body_length"] == len(body)


# --- a CA name that needs RFC 2253 escaping ----------------------------------

ODD_CA_CN = 'Écoles, "Grader"+Queue / it\'s <CA>; #1'


@pytest.fixture(scope="module")
def odd_pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("odd-pki"), n_clients=1, ca_cn=ODD_CA_CN)


def test_printed_dn_matches_nginx_for_names_needing_escapes(
    tmp_path_factory: pytest.TempPathFactory, upstream: EchoUpstream, odd_pki: PKI
) -> None:
    """The DN the script prints is what nginx passes, escapes and all."""
    client = odd_pki.clients[0]
    assert "\\," in client.issuer_dn  # RFC 2253 escaping happened
    with start_nginx(tmp_path_factory.mktemp("odd-nginx"), upstream.port, odd_pki) as proc:
        response = requests.get(
            proc.url("/test.php"),
            cert=client.requests_cert,
            verify=str(odd_pki.ca_crt),
            timeout=10,
        )
    seen = _seen(response)
    assert seen.one("X-SSL-Client-Verify") == "SUCCESS"
    assert seen.one("X-SSL-Client-I-DN") == client.issuer_dn
    assert seen.one("X-SSL-Client-Serial") == client.serial
