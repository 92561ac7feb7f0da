"""End to end: no-op jobs/s from sendjob to the result delivered, next to Celery and python-rq.

Ours: platform clients send jobs (pre-made RSA tokens) to gunicorn; N
``graderserver -l`` daemons (concurrency 1) run the no-op program; the
queue's delivery worker posts each result, signed and encrypted, to the
platform's return URL: a local HTTP receiver that decrypts and verifies it.
The clock runs from the first sendjob to the last result received there.

References in the same run: the protocol's floor (``floor_app`` under the
same gunicorn configuration, ``floor_grader`` loops, the same receiver and
clients: the four RSA operations and four HTTP exchanges a job costs any
implementation, and nothing else), then, on a throwaway redis-server,
Celery and python-rq (``peers``). CPU is counted per role (app, grading
servers, receiver, platform clients) from ``/proc``; ``--e2e-profile DIR``
also records py-spy stacks of the app and the grading servers, which
``profile_account`` sorts into steps and activities.

Dispatch, same run: one job at a time with the workers idle, from the
sendjob answer (ours) or the return of ``delay()``/``enqueue()`` (peers) to
the program's first line. The program is ``bash -c`` writing
``$EPOCHREALTIME`` to a FIFO, then ``cat`` (the job echoed as its result).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.processes import (
    die_with_parent,
    documented_gunicorn,
    free_port,
    wait_port,
)

from .common import (
    MP,
    ROOT,
    FormPoster,
    Senders,
    StartStamps,
    Unavailable,
    children_of,
    cpu_seconds,
    database,
    graderserver_config,
    make_queue,
    make_tokens,
    note,
    own_cpu,
    pct,
    print_table,
    ratio,
    redis_server,
    sendjob_request,
    start_graderserver,
    tmpdir,
    wait_listeners,
)
from .peers import PEER_WORKERS, celery_run, rq_run

SERVER_COUNTS = (1, 2, 4)
Roles = dict[str, list[int]]  # CPU accounting: role -> its processes


# -- the platform's return URL ------------------------------------------------


def _receiver(port: int, private_pem: str, queue_public_pem: str, out: Any) -> None:
    """Process: the platform's return URL; decrypts each result, reports (uid, time)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs

    from jwcrypto import jwk

    from graderqueue.client import open_result_token

    private = jwk.JWK.from_pem(private_pem.encode())
    public = jwk.JWK.from_pem(queue_public_pem.encode())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # As a platform's real web server does: without TCP_NODELAY the answer's
        # body (a second write after the headers) waits for the delayed ACK of
        # the headers, 40 ms per keep-alive request on Linux loopback.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            token = parse_qs(body.decode()).get("sToken", [""])[0]
            result = open_result_token(token, platform_private_key=private, queue_public_key=public)
            data = result.get("sResultData") or {}
            out.put((data.get("uid"), time.time()))
            answer = b'{"bSuccess": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class Receiver:
    def __init__(self, bench) -> None:  # type: ignore[no-untyped-def]
        self.port = free_port()
        self.out = MP.Queue()
        self.proc = MP.Process(
            target=_receiver,
            args=(self.port, bench.platform.private_pem, bench.queue_public_pem, self.out),
            daemon=True,
        )
        self.proc.start()
        wait_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}/results"

    def collect(self, count: int, timeout: float) -> list[tuple[str, float]]:
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"only {len(got)} of {count} results delivered")
            try:
                got.append(self.out.get(timeout=remaining))
            except queue.Empty:
                raise RuntimeError(f"only {len(got)} of {count} results delivered") from None
        return got

    def stop(self) -> None:
        self.proc.kill()
        self.proc.join(5)


# -- ours -------------------------------------------------------------------------


def scenarios(backend: str, counts: tuple[int, ...]) -> list[tuple[int, int]]:
    """(graderservers, app nodes) per row: each count on one node; on MariaDB
    also each count from 2 up spread over two nodes."""
    rows = [(count, 1) for count in counts]
    if backend == "mariadb":
        rows += [(count, 2) for count in counts if count >= 2]
    return rows


def ours(args, backend: str, workdir: Path, url: str, stamps: StartStamps):  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from graderqueue.store.models import Platform

    delivers = importlib.util.find_spec("graderqueue.delivery") is not None
    if not delivers:
        raise Unavailable("graderqueue.delivery is missing: no result delivery to measure")
    bench = make_queue(workdir, url)
    setup = bench.setup
    receiver = Receiver(bench)
    with setup.db.transaction() as session:
        session.execute(update(Platform).values(return_url=receiver.url))
    rows: list[list] = []
    dispatch: list[float] = []
    try:
        for count, nodes_wanted in scenarios(backend, args.e2e_servers):
            # The documented shape (a worker per core: two here) on one node;
            # one worker each on two nodes, the same number of processes.
            workers = 2 if nodes_wanted == 1 else 1
            nodes = [setup.gunicorn(workers, 64) for _ in range(nodes_wanted)]
            servers = [
                start_graderserver(
                    graderserver_config(
                        workdir / f"gs{count}-{nodes_wanted}-{i}.toml", nodes[i % nodes_wanted].url,
                        setup.server_token("t-c"), stamps.command,
                    ),
                    workdir / f"gs{count}-{nodes_wanted}-{i}.log",
                )
                for i in range(count)
            ]  # fmt: skip
            try:
                wait_listeners(setup, nodes_wanted)
                tag = f"{backend}-{count}-{nodes_wanted}"
                spec = bench.token_spec()
                warm = make_tokens(spec, [sendjob_request(f"w{tag}-{i}") for i in range(10)])
                for i, token in enumerate(warm):
                    FormPoster(nodes[i % nodes_wanted].url).post(
                        "/api.php", {"sToken": token, "sPlatform": bench.platform.name}
                    )
                receiver.collect(len(warm), 60)
                if count == PEER_WORKERS and nodes_wanted == 1:
                    dispatch = sequential(args, bench, nodes[0].url, stamps, tag)
                    receiver.collect(args.e2e_dispatch_jobs, 60)
                stamps.drain()
                roles = {
                    "app": [pid for node in nodes for pid in children_of(node.pid)],
                    "grading servers": [p.pid for p in servers],
                    "receiver": [receiver.proc.pid],
                }
                try:
                    rate, cpu, complete = throughput(
                        args, bench, [node.url for node in nodes], receiver, roles, tag
                    )
                except Exception:
                    where_stuck(setup, workdir)
                    raise
                stamps.drain()
                where = f", {nodes_wanted} app nodes" if nodes_wanted > 1 else ""
                note(f"  {backend}, {count} graderserver(s){where}: {rate:.0f} jobs/s delivered")
                name = f"graderqueue ({backend}), {count} graderserver(s){where}"
                rows.append([name, count, rate, cpu, complete])
            finally:
                for proc in servers:
                    proc.kill()
                    proc.wait(10)
                for node in nodes:
                    node.stop()
    finally:
        receiver.stop()
        setup.close()
    return rows, dispatch


def where_stuck(setup, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    """Print where undelivered jobs are, and the graderservers' logs' last lines."""
    from sqlalchemy import func, select

    from graderqueue.store.models import Delivery, Job

    jobs = setup.rows(select(Job.status, func.count()).group_by(Job.status))
    deliveries = setup.rows(select(Delivery.state, func.count()).group_by(Delivery.state))
    note(f"  stuck: jobs by status {jobs}, deliveries by state {deliveries}")
    for log in sorted(workdir.glob("gs*.log")):
        note(f"  {log.name}: {log.read_text()[-600:]!r}")
    if os.environ.get("BENCH_KEEP_STUCK"):
        shutil.copytree(workdir, os.environ["BENCH_KEEP_STUCK"], dirs_exist_ok=True)


def profile(args, roles: Roles, tag: str) -> list[subprocess.Popen[bytes]]:  # type: ignore[no-untyped-def]
    """With ``--e2e-profile DIR``: py-spy samples every app and grading-server
    process during the timed run, written as collapsed stacks (one file per
    process; a sample's cost is shared by all processes, so keep this off
    when the figures are what you want)."""
    if not args.e2e_profile:
        return []
    out = Path(args.e2e_profile)
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    procs = []
    for role, pids in roles.items():
        for pid in pids:
            name = out / f"{tag}-{role.replace(' ', '_')}-{pid}.txt"
            procs.append(
                subprocess.Popen(
                    [spy, "record", "-p", str(pid), "-f", "raw", "-r", "250", "-o", str(name),
                     "--subprocesses", "--gil"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
    time.sleep(1)  # py-spy attaches
    return procs


def throughput(args, bench, urls: list[str], receiver: Receiver, roles: Roles, tag: str):  # type: ignore[no-untyped-def]
    """Send ``--e2e-jobs`` jobs at once; jobs/s to the last result received, CPU
    ms/job per role (each role's processes; "platform clients" are the
    sending processes and this one), all delivered once."""
    jobs = args.e2e_jobs
    tokens = make_tokens(bench.token_spec(), [sendjob_request(f"{tag}-{i}") for i in range(jobs)])
    senders = Senders(urls, bench.platform.name, tokens, args.e2e_clients)
    before = {role: cpu_seconds(pids) for role, pids in roles.items()}
    own0 = own_cpu()
    profilers = profile(args, roles, tag)
    senders.go()
    try:
        got = receiver.collect(jobs, args.e2e_timeout)
    finally:
        for proc in profilers:
            proc.send_signal(signal.SIGINT)
        for proc in profilers:
            proc.wait(60)
    sent = senders.wait()
    cpu = {role: cpu_seconds(pids) - before[role] for role, pids in roles.items()}
    cpu["platform clients"] = own_cpu() - own0 + sent.client_cpu
    uids = {uid for uid, _ in got}
    last = max(t for _, t in got)
    complete = len(uids) == jobs and sent.errors == 0
    per_job = {role: seconds * 1000 / jobs for role, seconds in cpu.items()}
    return jobs / (last - sent.began), per_job, complete


# -- the floor: the protocol's own cost ----------------------------------------------


def floor(args, workdir: Path, stamps: StartStamps):  # type: ignore[no-untyped-def]
    """The same jobs through scripts/bench/floor_app.py and floor_grader loops.

    Returns rows (name, graderservers, jobs/s, CPU ms/job, complete) and the
    dispatch latencies with 2 idle loops."""
    bench = make_queue(workdir, "")  # for its keys and platform only
    receiver = Receiver(bench)
    pub = workdir / "platform.pub.pem"
    pub.write_text(bench.platform.public_pem)
    token = "floor-server-token"
    env = {
        "BENCH_QUEUE_KEY": str(bench.queue_private_path),
        "BENCH_QUEUE_KEY_NAME": bench.key_name,
        "BENCH_PLATFORM_PUB": str(pub),
        "BENCH_PLATFORM": bench.platform.name,
        "BENCH_RETURN_URL": receiver.url,
        "BENCH_SERVER_TOKEN": token,
    }
    rows: list[list] = []
    dispatch: list[float] = []
    try:
        for count in args.e2e_servers:
            node = documented_gunicorn("scripts.bench.floor_app:app", env, workers=1, threads=64)
            node.start()
            loops = [
                subprocess.Popen(
                    [sys.executable, "-m", "scripts.bench.floor_grader", node.url, token,
                     json.dumps(stamps.command)],
                    cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT), "LC_ALL": "C"},
                    stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
                )
                for _ in range(count)
            ]  # fmt: skip
            try:
                tag = f"floor-{count}"
                warm = make_tokens(
                    bench.token_spec(), [sendjob_request(f"w{tag}-{i}") for i in range(10)]
                )
                poster = FormPoster(node.url)
                for t in warm:
                    poster.post("/api.php", {"sToken": t, "sPlatform": bench.platform.name})
                receiver.collect(len(warm), 60)
                if count == PEER_WORKERS:
                    dispatch = sequential(args, bench, node.url, stamps, tag)
                    receiver.collect(args.e2e_dispatch_jobs, 60)
                stamps.drain()
                roles = {
                    "app": children_of(node.pid),
                    "grading servers": [p.pid for p in loops],
                    "receiver": [receiver.proc.pid],
                }
                rate, cpu, complete = throughput(args, bench, [node.url], receiver, roles, tag)
                stamps.drain()
                note(f"  floor, {count} grading loop(s): {rate:.0f} jobs/s delivered")
                rows.append([f"floor (protocol only), {count} grading loop(s)", count, rate, cpu,
                             complete])  # fmt: skip
            finally:
                for proc in loops:
                    proc.kill()
                    proc.wait(10)
                node.stop()
    finally:
        receiver.stop()
        bench.setup.close()
    return rows, dispatch


def sequential(args, bench, url: str, stamps: StartStamps, tag: str) -> list[float]:  # type: ignore[no-untyped-def]
    tokens = make_tokens(
        bench.token_spec(), [sendjob_request(f"s{tag}-{i}") for i in range(args.e2e_dispatch_jobs)]
    )
    poster = FormPoster(url)
    rng = random.Random(5)
    stamps.drain()
    out = []
    for token in tokens:
        time.sleep(0.03 * (0.5 + rng.random()))
        answer = poster.post("/api.php", {"sToken": token, "sPlatform": bench.platform.name})
        answered = time.time()
        if answer.get("errorcode") != 0:
            raise RuntimeError(f"sendjob failed: {answer}")
        out.append((stamps.next(30) - answered) * 1000)
    return out


# -- the table ---------------------------------------------------------------------


# Issue targets: each against its reference measured in the same run.
FLOOR_RATE = 0.8  # jobs/s >= 0.8x the floor with as many graderservers
CELERY_RATE = 0.5  # and >= 0.5x Celery
FLOOR_CPU = 1.3  # CPU per job <= 1.3x the floor's
DISPATCH_P50 = {"sqlite": 4.0, "mariadb": 6.0}
DISPATCH_P99 = 15.0
CPU_ROLES = ("app", "grading servers", "receiver", "platform clients")


def run(args: argparse.Namespace) -> list[list]:
    workdir = tmpdir("e2e")
    stamps = StartStamps(workdir)
    rows: list[list] = []
    dispatch: dict[str, list[float]] = {}
    try:
        with redis_server(workdir) as redis:
            celery_rate, dispatch["Celery"], celery_cpu = celery_run(args, redis, stamps, workdir)
            note(f"  Celery, {PEER_WORKERS} solo workers: {celery_rate:.0f} jobs/s")
            rq_rate, dispatch["python-rq"], rq_cpu = rq_run(args, redis, stamps, workdir)
            note(f"  python-rq, {PEER_WORKERS} SimpleWorkers: {rq_rate:.0f} jobs/s")
        sub = workdir / "floor"
        sub.mkdir()
        floor_rows, dispatch["floor (protocol only)"] = floor(args, sub, stamps)
        for backend in args.backends:
            sub = workdir / backend
            sub.mkdir()
            try:
                with database(backend, sub) as url:
                    got, ours_dispatch = ours(args, backend, sub, url, stamps)
                rows += got
                dispatch[f"graderqueue ({backend})"] = ours_dispatch
            except Unavailable as exc:
                note(f"e2e on {backend}: skipped ({exc})")
    finally:
        stamps.close()
        shutil.rmtree(workdir, ignore_errors=True)
    floors = {count: (rate, sum(cpu.values())) for _, count, rate, cpu, _ in floor_rows}
    table = []
    split = []
    for name, count, rate, parts, ok in floor_rows + rows:
        cpu = sum(parts.values())
        split.append([name, *(parts[role] for role in CPU_ROLES), cpu])
        floor_rate, floor_cpu = floors[count]
        met = (
            rate >= FLOOR_RATE * floor_rate
            and rate >= CELERY_RATE * celery_rate
            and cpu <= FLOOR_CPU * floor_cpu
        )
        verdict = "-" if name.startswith("floor") else ("PASS" if met else "MISS")
        table.append([name, args.e2e_jobs, rate, ratio(rate, floor_rate), ratio(rate, celery_rate),
                      cpu, ratio(cpu, floor_cpu), verdict, "yes" if ok else "NO"])  # fmt: skip
    for name, rate, cpu in (
        (f"Celery + Redis, {PEER_WORKERS} solo workers", celery_rate, celery_cpu),
        (f"python-rq, {PEER_WORKERS} SimpleWorkers", rq_rate, rq_cpu),
    ):
        table.append([name, args.e2e_jobs, rate, "-", ratio(rate, celery_rate), cpu, "-", "-", "-"])
    print_table(
        "End to end: no-op jobs/s, sendjob -> result at the return URL "
        f"(targets: >= {FLOOR_RATE}x the floor with as many graderservers, "
        f">= {CELERY_RATE}x Celery, CPU <= {FLOOR_CPU}x the floor's)",
        ["system", "jobs", "jobs/s", "vs floor", "vs Celery", "CPU ms/job, all processes",
         "CPU vs floor", "target", "all delivered once"],
        table,
    )  # fmt: skip
    print_table(
        "End to end: CPU ms per job by process",
        ["system", *CPU_ROLES, "all"],
        split,
    )
    celery50 = pct(dispatch["Celery"], 50)
    floor50 = pct(dispatch["floor (protocol only)"], 50)
    drows = []
    for name, values in dispatch.items():
        p50, p99 = pct(values, 50), pct(values, 99)
        verdict = "-"
        for backend, limit in DISPATCH_P50.items():
            if name == f"graderqueue ({backend})":
                verdict = "PASS" if p50 <= limit and p99 <= DISPATCH_P99 else "MISS"
        drows.append([name, len(values), p50, p99, ratio(p50, floor50), ratio(p50, celery50),
                      verdict])  # fmt: skip
    print_table(
        f"Dispatch with {PEER_WORKERS} idle workers: enqueue answer -> program start "
        f"(targets: p50 <= {DISPATCH_P50['sqlite']} ms SQLite, {DISPATCH_P50['mariadb']} ms "
        f"MariaDB; p99 <= {DISPATCH_P99} ms)",
        ["system", "jobs", "p50 ms", "p99 ms", "p50 vs floor", "p50 vs Celery", "target"],
        drows,
    )
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--e2e-jobs", type=int, default=600, help="jobs per throughput run")
    parser.add_argument("--e2e-clients", type=int, default=2, help="platform client processes")
    parser.add_argument("--e2e-dispatch-jobs", type=int, default=150)
    parser.add_argument(
        "--e2e-servers",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        default=SERVER_COUNTS,
        help="graderserver counts, comma-separated (default 1,2,4)",
    )
    parser.add_argument(
        "--e2e-profile", metavar="DIR", help="py-spy the app and grading servers into DIR"
    )
    parser.add_argument(
        "--e2e-timeout", type=float, default=300, help="seconds to wait for all results"
    )
