"""Real subprocesses for tests: gunicorn serving an app, the CLI, free ports.

Tests run the queue the way production does (gunicorn with gthread
workers, the ``graderqueue`` command) instead of through test clients where
the difference matters: several worker processes, real sockets, signals.
Every process started here is stopped by its owner, and gets SIGTERM if
the test process itself is killed, so none outlives the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import ROOT

__all__ = [
    "CliError",
    "Gunicorn",
    "die_with_parent",
    "documented_gunicorn",
    "free_port",
    "gunicorn_supports",
    "run_cli",
    "stop_process",
    "wait_port",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Another process may take it before the caller binds it; callers that
    start servers retry on "address already in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """Child pre-exec hook: get SIGTERM when the test process dies.

    Keeps a killed pytest (SIGKILL, a CI timeout) from leaving servers
    behind. Linux only (prctl PR_SET_PDEATHSIG); a no-op elsewhere. The
    signal comes when the *thread* that started the child ends, so start
    long-lived servers from the main thread (fixtures do).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[Any] | None = None) -> None:
    """Return once 127.0.0.1:*port* accepts a connection.

    Fails after *timeout* seconds, or at once if *proc* (the server being
    waited for) has exited: its port might otherwise be another's.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL the process (and its group when it leads one)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout)


def _merged_env(env: Mapping[str, str | None] | None) -> dict[str, str]:
    merged = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return merged


def _tail(text: str, limit: int = 8000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


@functools.cache
def _gunicorn_help(python: str) -> str:
    result = subprocess.run(
        [python, "-m", "gunicorn", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


def gunicorn_supports(flag: str, python: str = sys.executable) -> bool:
    """Whether this gunicorn knows *flag* (asked once per interpreter)."""
    return flag in _gunicorn_help(python).split()


class Gunicorn:
    """gunicorn serving a WSGI app on a free loopback port.

    ``start()`` launches ``python -m gunicorn`` with gthread workers and
    waits until an HTTP GET on *ready_path* gets any HTTP answer (a 404 or
    500 still proves the server is up); it fails with the tail of the logs
    if the server dies or does not answer within *startup_timeout*.
    ``stop()`` sends SIGTERM, then SIGKILL to the whole process group if
    the server has not exited in time. Also a context manager.

    *env* is added to this process's environment (a None value removes a
    variable). Logs go to files in *log_dir* (a fresh temporary directory by
    default, removed on ``stop()`` after its text is kept for
    ``log_text()``).
    """

    def __init__(
        self,
        app: str = "graderqueue.wsgi:app",
        *,
        env: Mapping[str, str | None] | None = None,
        workers: int = 2,
        threads: int = 8,
        cwd: str | os.PathLike[str] | None = None,
        ready_path: str = "/",
        startup_timeout: float = 30.0,
        graceful_timeout: int = 5,
        extra_args: Sequence[str] = (),
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.app = app
        self.env = dict(env or {})
        self.workers = workers
        self.threads = threads
        self.cwd = cwd
        self.ready_path = ready_path
        self.startup_timeout = startup_timeout
        self.graceful_timeout = graceful_timeout
        self.extra_args = list(extra_args)
        self._given_log_dir = Path(log_dir) if log_dir is not None else None
        self.log_dir: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None
        self._kept_logs: str | None = None

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>`` (no trailing slash)."""
        if self.port is None:
            raise RuntimeError("Gunicorn not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The master process id while running."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _log(self, name: str) -> Path:
        assert self.log_dir is not None
        return self.log_dir / name

    def command(self) -> list[str]:
        """The gunicorn command line for the current port."""
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--worker-class",
            "gthread",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--graceful-timeout",
            str(self.graceful_timeout),
            "--error-logfile",
            str(self._log("error.log")),
            "--access-logfile",
            str(self._log("access.log")),
            "--capture-output",
        ]
        # gunicorn >= 27 opens one control socket per user
        # (~/.gunicorn/gunicorn.ctl) that parallel instances fight over.
        if gunicorn_supports("--no-control-socket"):
            cmd.append("--no-control-socket")
        return [*cmd, *self.extra_args, self.app]

    def log_text(self) -> str:
        """Error log (with captured app output), console and access log."""
        if self._kept_logs is not None:
            return self._kept_logs
        if self.log_dir is None:
            return ""
        parts = []
        for name in ("error.log", "console.log", "access.log"):
            try:
                text = self._log(name).read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts)

    def start(self) -> Gunicorn:
        if self.running:
            return self
        began = time.monotonic()
        self._kept_logs = None
        if self._given_log_dir is not None:
            self._given_log_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir = self._given_log_dir
        else:
            self.log_dir = Path(tempfile.mkdtemp(prefix="gq-gunicorn-"))
        try:
            launch_on_a_free_port(self)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _launch_and_wait(self, *, last_attempt: bool) -> bool:
        """Start gunicorn; True when it answers, False to retry a new port."""
        for name in ("error.log", "console.log", "access.log"):
            self._log(name).unlink(missing_ok=True)
        with self._log("console.log").open("wb") as console:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                env=_merged_env(self.env),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() can kill the workers too
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                logs = self.log_text()
                if not last_attempt and ("already in use" in logs or "Connection in use" in logs):
                    return False
                raise RuntimeError(
                    f"gunicorn {self.app} exited with code {code} while "
                    f"starting on port {self.port}\n{_tail(logs)}"
                )
            if self._answers():
                return True
            time.sleep(0.05)
        self._terminate()
        raise RuntimeError(
            f"gunicorn {self.app} gave no HTTP answer on {self.url}"
            f"{self.ready_path} within {self.startup_timeout:.0f} s\n" + _tail(self.log_text())
        )

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", self.ready_path)
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
        return True

    def _terminate(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(self.graceful_timeout + 10)
        # Workers normally exit with the master; make sure none is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(10)

    def stop(self) -> None:
        """Stop the server; keep its log text; remove a temporary log dir."""
        self._terminate()
        if self.log_dir is not None:
            self._kept_logs = None
            self._kept_logs = self.log_text()
            if self._given_log_dir is None:
                shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"<Gunicorn {self.app} {state}>"


def documented_gunicorn(
    app: str, env: Mapping[str, str | None], workers: int, threads: int
) -> Gunicorn:
    """A (not yet started) gunicorn run as the docs run the queue.

    ``examples/gunicorn.conf.py`` from the repository root, the checkout
    importable (``PYTHONPATH``), ready once ``/healthz`` answers: the queue's
    app and the benchmarks' bare endpoints start the same way.
    """
    return Gunicorn(
        app,
        env={**env, "PYTHONPATH": str(ROOT)},
        workers=workers,
        threads=threads,
        ready_path="/healthz",
        cwd=str(ROOT),
        extra_args=["-c", str(ROOT / "examples" / "gunicorn.conf.py")],
    )


class CliError(subprocess.CalledProcessError):
    """A CLI run failed; ``str()`` shows the output, unlike its base class."""

    def __str__(self) -> str:
        return (
            f"{super().__str__()}\n--- stdout ---\n{_tail(self.stdout or '')}"
            f"\n--- stderr ---\n{_tail(self.stderr or '')}"
        )


def launch_on_a_free_port(server: Any) -> None:
    """Start ``server`` through its ``_launch_and_wait(last_attempt=...)`` on a free port.

    free_port() can race with another process taking the port before the
    server binds it: a few ports are tried before giving up.
    """
    for attempt in range(3):
        server.port = free_port()
        if server._launch_and_wait(last_attempt=attempt == 2):
            return


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str | None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    input: str | None = None,
    *,
    timeout: float = 60.0,
    module: str = "graderqueue",
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m graderqueue ARGS`` and return its text output.

    *env* is added to this process's environment (None removes a variable).
    With *check*, a non-zero exit raises :class:`CliError` showing stdout and
    stderr. Stdin is empty unless *input* is given, so a command that
    prompts fails instead of hanging; *timeout* bounds a hang anyway.
    """
    cmd = [sys.executable, "-m", module, *args]
    result = subprocess.run(
        cmd,
        env=_merged_env(env),
        cwd=cwd,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise CliError(result.returncode, cmd, result.stdout, result.stderr)
    return result
