"""A real nginx running the shipped site config, for tests.

:func:`start_nginx` takes ``examples/nginx/graderqueue.conf`` as it is and
replaces only the production paths and ports that a test cannot use (the
literals below, each of which must be found exactly as often as expected,
so an edit of the example that this module would silently miss fails
loudly). It wraps the result in a minimal main config that keeps every file
nginx writes (pid, logs, temp files) in the test's directory, so it runs as
root or as a user without touching /etc or /var.

When the ``nginx`` binary is missing the caller's test is skipped, except
under ``CI=true``, where nginx is installed on purpose and its absence is a
failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness import ROOT
from harness.processes import die_with_parent, free_port

if TYPE_CHECKING:
    from harness.certs import PKI

__all__ = [
    "SITE_CONF",
    "NginxError",
    "NginxProcess",
    "find_nginx",
    "render_site_conf",
    "start_nginx",
]

SITE_CONF = ROOT / "examples" / "nginx" / "graderqueue.conf"

# Production literals in SITE_CONF that tests replace, with their counts.
CERT_DIR_LITERAL = "/etc/graderqueue/certs/"
LISTEN_LITERAL = "listen 443 ssl;"
UPSTREAM_LITERAL = "server 127.0.0.1:8000;"
ACCESS_LOG_LITERAL = "/var/log/nginx/graderqueue.access.log"
ERROR_LOG_LITERAL = "/var/log/nginx/graderqueue.error.log"
_EXPECTED_COUNTS = {
    # ca.crt, server.crt, server.key in directives; the header comment names none.
    CERT_DIR_LITERAL: 3,
    LISTEN_LITERAL: 1,
    UPSTREAM_LITERAL: 1,
    ACCESS_LOG_LITERAL: 1,
    ERROR_LOG_LITERAL: 1,
}

START_TIMEOUT_SEC = 10.0
STOP_TIMEOUT_SEC = 10.0


class NginxError(RuntimeError):
    """nginx could not be configured or started; the message has its log."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def find_nginx() -> str:
    """Path of the nginx binary; skip the test (fail under CI) when missing."""
    found = shutil.which("nginx")
    if found is None:
        for candidate in (
            "/usr/sbin/nginx",
            "/usr/local/sbin/nginx",
            "/usr/local/nginx/sbin/nginx",
        ):
            if os.access(candidate, os.X_OK):
                found = candidate
                break
    if found is None:
        reason = "nginx is not installed (on Debian: apt-get install nginx)"
        if _in_ci():
            pytest.fail(f"{reason}; it is required under CI=true", pytrace=False)
        pytest.skip(reason)
    return found


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def render_site_conf(
    *,
    cert_dir: Path,
    listen_port: int,
    upstream_port: int,
    log_dir: Path,
    source: Path = SITE_CONF,
) -> str:
    """The example site config with only paths and ports replaced.

    Listens on 127.0.0.1 only, reads the certificates from ``cert_dir``
    (``ca.crt``, ``server.crt``, ``server.key`` as the certs/ scripts name
    them), proxies to 127.0.0.1:``upstream_port`` and logs into ``log_dir``.
    """
    text = source.read_text()
    directives = _strip_comments(text)
    for literal, expected in _EXPECTED_COUNTS.items():
        found = directives.count(literal)
        if found != expected:
            raise NginxError(
                f"{source} has {found} occurrence(s) of {literal!r} outside comments, "
                f"harness/nginx.py expects {expected}: update one or the other"
            )
    replacements = {
        CERT_DIR_LITERAL: f"{cert_dir}/",
        LISTEN_LITERAL: f"listen 127.0.0.1:{listen_port} ssl;",
        UPSTREAM_LITERAL: f"server 127.0.0.1:{upstream_port};",
        ACCESS_LOG_LITERAL: str(log_dir / "site.access.log"),
        ERROR_LOG_LITERAL: str(log_dir / "site.error.log"),
    }
    for literal, value in replacements.items():
        text = text.replace(literal, value)
    leftover = [
        word
        for word in _strip_comments(text).split()
        if word.startswith(("/etc/", "/var/", "/run/"))
    ]
    if leftover:
        raise NginxError(f"{source} uses system paths tests cannot template: {leftover}")
    return text


def _main_conf(workdir: Path, site_conf: Path) -> str:
    # nginx switches workers to "nobody" when started as root; nobody could
    # not enter pytest's private temp directory to buffer request bodies.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    tmp = workdir / "tmp"
    return (
        "daemon off;\n"
        "master_process on;\n"
        "worker_processes 1;\n"
        f"{user}"
        f"pid {workdir / 'nginx.pid'};\n"
        f"lock_file {workdir / 'nginx.lock'};\n"
        f"error_log {workdir / 'error.log'} notice;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {workdir / 'access.log'};\n"
        f"    client_body_temp_path {tmp / 'client_body'};\n"
        f"    proxy_temp_path {tmp / 'proxy'};\n"
        f"    fastcgi_temp_path {tmp / 'fastcgi'};\n"
        f"    uwsgi_temp_path {tmp / 'uwsgi'};\n"
        f"    scgi_temp_path {tmp / 'scgi'};\n"
        f"    include {site_conf};\n"
        "}\n"
    )


class NginxProcess:
    """A running nginx; :meth:`stop` it (or use it as a context manager)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
        self.proc = proc
        self.port = port
        self.workdir = workdir
        self.conf = workdir / "nginx.conf"
        self.site_conf = workdir / "graderqueue.conf"
        self.error_log = workdir / "error.log"
        self.site_error_log = workdir / "site.error.log"
        self.access_log = workdir / "site.access.log"

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>``; the test server certificate covers that IP."""
        return f"https://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def logs(self) -> str:
        """Both error logs, for failure messages."""
        parts = []
        for log in (self.error_log, self.site_error_log, self.workdir / "stderr.log"):
            if log.exists():
                parts.append(f"--- {log.name}\n{log.read_text(errors='replace')}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Fast shutdown (SIGTERM), then remove nginx's temp files; logs stay."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_SEC)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_SEC)
        shutil.rmtree(self.workdir / "tmp", ignore_errors=True)
        for leftover in ("nginx.pid", "nginx.lock"):
            (self.workdir / leftover).unlink(missing_ok=True)

    def __enter__(self) -> NginxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, pid_file: Path) -> bool:
    """True once nginx wrote its pid file and 127.0.0.1:port accepts.

    nginx writes the pid file only after binding its sockets, so an accepting
    port with no pid file may belong to another process that took the port.
    """
    deadline = time.monotonic() + START_TIMEOUT_SEC
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if pid_file.exists():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return proc.poll() is None
            except OSError:
                pass
        time.sleep(0.02)
    return False


def start_nginx(
    tmpdir: os.PathLike[str] | str, upstream_port: int, pki: PKI, *, attempts: int = 5
) -> NginxProcess:
    """Start nginx with the example site config in front of 127.0.0.1:upstream_port.

    Uses ``pki.dir`` (ca.crt, server.crt, server.key) for TLS and client
    verification, listens on a free port of 127.0.0.1, and returns once the
    port accepts connections. Retries with another port if the chosen one
    was taken in the meantime.
    """
    nginx = find_nginx()
    workdir = Path(tmpdir) / "nginx"
    workdir.mkdir(parents=True, exist_ok=True)
    last_logs = ""
    for _ in range(attempts):
        port = free_port()
        for old in workdir.glob("*.log"):
            old.unlink()
        site = workdir / "graderqueue.conf"
        site.write_text(
            render_site_conf(
                cert_dir=pki.dir,
                listen_port=port,
                upstream_port=upstream_port,
                log_dir=workdir,
            )
        )
        (workdir / "tmp").mkdir(exist_ok=True)
        conf = workdir / "nginx.conf"
        conf.write_text(_main_conf(workdir, site))
        with open(workdir / "stderr.log", "wb") as stderr:
            proc = subprocess.Popen(
                [nginx, "-p", f"{workdir}/", "-c", str(conf), "-e", str(workdir / "error.log")],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                preexec_fn=die_with_parent,
            )
        process = NginxProcess(proc, port, workdir)
        if _wait_until_listening(proc, port, workdir / "nginx.pid"):
            return process
        last_logs = process.logs()
        process.stop()
        if "Address already in use" not in last_logs:
            break
    raise NginxError(f"nginx did not start:\n{last_logs}")
