"""Shared helpers of the benchmark suite: tables, percentiles, servers, clients.

Everything listens on 127.0.0.1 only, every loop is bounded in count and
time, and every process started here is stopped by its owner (and gets
SIGTERM if the benchmark process dies).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import os
import platform as _platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.graderserver_config import toml_text  # noqa: E402
from harness.processes import die_with_parent, free_port, stop_process, wait_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent
# Spawned (not forked) helpers: the parent may hold threads and open sockets.
MP = multiprocessing.get_context("spawn")


# -- numbers and tables -------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(value: float, reference: float) -> str:
    if not reference or reference != reference or value != value:
        return "-"
    return f"{value / reference:.2f}"


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print a Markdown table (ready for docs/PERFORMANCE.md) and return its text."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = [f"\n### {title}\n"]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


_T0 = time.monotonic()


def note(text: str) -> None:
    """A progress line, with the seconds since the run started."""
    print(f"[{time.monotonic() - _T0:5.0f}s] {text}", flush=True)


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, nproc={os.cpu_count()}, CPU: {model}, "
        f"Python {_platform.python_version()}, load average at start: {load}"
    )


# -- processes ----------------------------------------------------------------


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int], with_children: bool = True) -> float:
    """User + system CPU of these processes (and of their waited-for children)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            # fields[11:15] = utime stime cutime cstime (proc(5) fields 14-17)
            ticks = fields[11:15] if with_children else fields[11:13]
            total += sum(int(x) for x in ticks) / _TICK
    return total


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(x) for x in (task / "children").read_text().split()]
    return out


@dataclass
class Redis:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[Redis]:
    """A throwaway redis-server on 127.0.0.1 without persistence."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    log = open(workdir / f"redis-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    try:
        wait_port(port, 20, proc)
        yield Redis(port, proc.pid)
    finally:
        stop_process(proc)
        log.close()


# -- MariaDB --------------------------------------------------------------------

_mariadb: tuple[str, Any] | None = None


def mariadb_base() -> str | None:
    """The MariaDB server for the whole run (127.0.0.1:3306 as root, or a throwaway)."""
    global _mariadb
    if _mariadb is None:
        from harness.mariadb import MariaDBUnavailable, mariadb_base_url

        try:
            _mariadb = mariadb_base_url()
        except (MariaDBUnavailable, RuntimeError) as exc:
            note(f"(MariaDB unavailable: {exc}; MariaDB rows are skipped)")
            _mariadb = ("", None)
    return _mariadb[0] or None


def stop_mariadb() -> None:
    if _mariadb is not None and _mariadb[1] is not None:
        _mariadb[1].stop()


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A database URL for one benchmark: '' (SQLite in the instance) or a fresh MariaDB db."""
    if backend == "sqlite":
        yield ""
        return
    from harness.mariadb import temporary_database

    base = mariadb_base()
    if base is None:
        raise Unavailable("no MariaDB")
    with temporary_database(base) as url:
        yield url


class Unavailable(Exception):
    """A part of a benchmark cannot run here (say why and go on)."""


# -- the queue --------------------------------------------------------------------


@dataclass
class Bench:
    """A queue under test, with one platform whose keys the clients use."""

    setup: Any  # harness.queue.QueueSetup
    platform: Any  # PlatformIdentity
    queue_public_pem: str
    queue_private_path: Path
    key_name: str

    def token_spec(self) -> dict[str, str]:
        return {
            "platform": self.platform.name,
            "private": self.platform.private_pem,
            "queue_public": self.queue_public_pem,
            "key_name": self.key_name,
        }


def make_queue(workdir: Path, database_url: str, **overrides: Any) -> Bench:
    """A queue as production would run it: registry cache on (QueueSetup's tests turn it off)."""
    from graderqueue.protocol import keys
    from harness.queue import QueueSetup

    overrides.setdefault("registry_cache_sec", 2)
    setup = QueueSetup(workdir / "instance", database_url, **overrides)
    setup.tag("c")
    setup.server_type("t-c", ["c"])
    platform = setup.platform("bench")
    qkeys = keys.QueueKeys(setup.settings.resolved_key_dir, setup.settings.key_name)
    return Bench(
        setup=setup,
        platform=platform,
        queue_public_pem=qkeys.active.public_pem,
        queue_private_path=setup.settings.resolved_key_dir / f"{setup.settings.key_name}.pem",
        key_name=setup.settings.key_name,
    )


# -- platform tokens, made in helper processes -------------------------------------


def _make_tokens(spec: dict[str, str], requests_: list[dict[str, Any]]) -> list[str]:
    from jwcrypto import jwk

    from graderqueue.client import make_request_token

    private = jwk.JWK.from_pem(spec["private"].encode())
    public = jwk.JWK.from_pem(spec["queue_public"].encode())
    return [
        make_request_token(
            r,
            platform_name=spec["platform"],
            platform_private_key=private,
            queue_public_key=public,
            queue_key_name=spec["key_name"],
        )
        for r in requests_
    ]


def sendjob_request(uid: str, jobdata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "request": "sendjob",
        "jobdata": json.dumps(jobdata or {"taskPath": "$ROOT_PATH/noop", "uid": uid}),
        "tags": "c",
        "jobusertaskid": uid,
    }


def make_tokens(spec: dict[str, str], requests_: list[dict[str, Any]], procs: int = 2) -> list[str]:
    """Seal many request tokens in parallel (RSA signing costs ~1.5 ms each)."""
    chunks = [requests_[i::procs] for i in range(procs)]
    with MP.Pool(procs) as pool:
        parts = pool.starmap(_make_tokens, [(spec, c) for c in chunks])
    out: list[str] = [""] * len(requests_)
    for i, part in enumerate(parts):
        out[i::procs] = part
    return out


class FormPoster:
    """Keep-alive form POSTs with http.client: far less client CPU than requests."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        hostport = url.split("://", 1)[1].rstrip("/")
        host, port = hostport.rsplit(":", 1)
        self.host, self.port, self.timeout = host, int(port), timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, fields: dict[str, str]) -> dict[str, Any]:
        body = urlencode(fields)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", path, body, headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if response.getheader("connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return json.loads(data)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _sender(
    url: str, platform: str, tokens: list[str], warm: int, conns: int, start: Any, out: Any
) -> None:
    """Client process: ``conns`` keep-alive connections send ``warm`` tokens each,
    then, on the start signal, the rest, timed."""
    import threading

    timings: list[tuple[float, float, Any]] = []
    errors = [0]
    lock = threading.Lock()
    posters = [FormPoster(url) for _ in range(conns)]
    mine = [tokens[i::conns] for i in range(conns)]
    for poster, part in zip(posters, mine, strict=True):
        for token in part[:warm]:
            poster.post("/api.php", {"sToken": token, "sPlatform": platform})

    def send(poster: FormPoster, part: list[str]) -> None:
        for token in part[warm:]:
            t0 = time.time()
            answer = poster.post("/api.php", {"sToken": token, "sPlatform": platform})
            t1 = time.time()
            with lock:
                errors[0] += answer.get("errorcode") != 0
                timings.append((t0, t1, answer.get("jobid")))
        poster.close()

    threads = [threading.Thread(target=send, args=pair) for pair in zip(posters, mine, strict=True)]
    out.put("ready")
    start.wait(300)
    cpu0 = own_cpu()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((timings, errors[0], own_cpu() - cpu0))


@dataclass
class SendRun:
    timings: list[tuple[float, float, Any]]
    errors: int
    client_cpu: float = 0.0  # CPU seconds the client processes spent sending

    @property
    def began(self) -> float:
        return min(t[0] for t in self.timings)

    @property
    def ended(self) -> float:
        return max(t[1] for t in self.timings)

    @property
    def rate(self) -> float:
        return len(self.timings) / (self.ended - self.began)

    def latency_ms(self, p: float) -> float:
        return pct([(t1 - t0) * 1000 for t0, t1, _ in self.timings], p)


class Senders:
    """Client processes holding pre-made tokens; :meth:`go` releases them all at once.

    Each client process has ``conns`` connections, each with its share of the
    tokens; with several URLs (app nodes) the clients take turns among them.
    Each connection first sends ``warm`` of its tokens untimed (first requests
    pay for lazy imports and caches), then waits for :meth:`go`.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        platform: str,
        tokens: list[str],
        clients: int,
        warm: int = 0,
        conns: int = 1,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)  # client i sends to urls[i % n]
        self.start = MP.Event()
        self.out = MP.Queue()
        self.procs = [
            MP.Process(
                target=_sender,
                args=(
                    urls[i % len(urls)],
                    platform,
                    tokens[i::clients],
                    warm,
                    conns,
                    self.start,
                    self.out,
                ),
                daemon=True,
            )
            for i in range(clients)
        ]
        for proc in self.procs:
            proc.start()
        for _ in self.procs:
            if self.out.get(timeout=120) != "ready":
                raise RuntimeError("a client process failed while warming up")

    def go(self) -> None:
        self.start.set()

    def wait(self, timeout: float = 300) -> SendRun:
        timings: list[tuple[float, float, Any]] = []
        errors = 0
        cpu = 0.0
        for _ in self.procs:
            part, errs, spent = self.out.get(timeout=timeout)
            timings += part
            errors += errs
            cpu += spent
        for proc in self.procs:
            proc.join(10)
        return SendRun(timings, errors, cpu)

    def run(self, timeout: float = 300) -> SendRun:
        self.go()
        return self.wait(timeout)


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"gq-bench-{prefix}-"))


# -- graderservers -------------------------------------------------------------


def graderserver_config(
    path: Path, url: str, token: str, command: list[str], concurrency: int = 1
) -> Path:
    """A graderserver TOML for a bench: permissive health, wake-ups on a free port."""
    sections = {
        "queue": {"url": url + "/", "server_token": token, "request_timeout": 60},
        "program": {"command": command, "timeout": 30},
        "paths": {"root": str(path.parent)},
        "wakeup": {"host": "127.0.0.1", "port": 0},
        "health": {
            "max_cpu_steal_percent": 100,
            "min_free_memory_mib": 0,
            "min_free_disk_mib": 0,
            "disk_path": str(path.parent),
        },
        "daemon": {
            "concurrency": concurrency,
            "backoff_initial": 0.2,
            "backoff_max": 1,
            "results_retry_delay": 0.2,
            "log_level": "WARNING",
        },
    }
    path.write_text(toml_text(sections))
    return path


def start_graderserver(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``graderserver -c CONFIG -l``: long-running, long-polling, listening for wake-ups."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "graderserver", "-c", str(config), "-l"],
            cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT), "LC_ALL": "C"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


def wait_listeners(setup: Any, count: int, timeout: float = 30.0) -> None:
    """Until ``count`` web worker processes have a long-poll waiting (the listeners table)."""
    from sqlalchemy import func, select

    from graderqueue.store.models import Listener

    deadline = time.monotonic() + timeout
    while setup.scalar(select(func.count()).select_from(Listener)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the graderservers never started polling")
        time.sleep(0.05)


class StartStamps:
    """A FIFO the grading program writes its start time to; read by a thread here.

    The program is ``bash -c 'printf "%s\\n" "$EPOCHREALTIME" > FIFO; exec cat'``:
    it records when it started, then echoes the job back as its result.
    """

    def __init__(self, workdir: Path) -> None:
        import queue
        import threading

        self.path = workdir / "starts.fifo"
        os.mkfifo(self.path)
        # Read and write end both here: writers never block, reads never see EOF.
        self.fd = os.open(self.path, os.O_RDWR)
        self.stamps: queue.Queue[float] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    @property
    def command(self) -> list[str]:
        script = 'printf "%s\\n" "$EPOCHREALTIME" > "$0"; exec cat'
        return ["/bin/bash", "-c", script, str(self.path)]

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self.stamps.put(float(line.decode().replace(",", ".")))

    def next(self, timeout: float = 10.0) -> float:
        return self.stamps.get(timeout=timeout)

    def drain(self) -> int:
        n = 0
        while not self.stamps.empty():
            self.stamps.get_nowait()
            n += 1
        return n

    def close(self) -> None:
        os.close(self.fd)


def process_start_overhead(command: list[str], stamps: StartStamps, count: int) -> list[float]:
    """Popen (as the graderserver's runner does it) to the program's first line, in ms."""
    out = []
    for _ in range(count):
        t0 = time.time()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        proc.communicate(b"{}", timeout=10)
        out.append((stamps.next() - t0) * 1000)
    return out
