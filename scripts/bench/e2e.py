"""End to end: no-op jobs/s from sendjob to the result delivered, next to Celery and python-rq.

Ours: platform clients send jobs (pre-made RSA tokens) to gunicorn; N
``graderserver -l`` daemons (concurrency 1) run the no-op program; the
queue's delivery worker posts each result, signed and encrypted, to the
platform's return URL: a local HTTP receiver that decrypts and verifies it.
The clock runs from the first sendjob to the last result received there.

References in the same run, on a throwaway redis-server: Celery (Redis
broker and result backend, 2 ``--pool=solo`` workers) and python-rq (2
SimpleWorkers), each task running the same program the same way; their
clock runs from the first enqueue to the last result stored.

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
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.processes import die_with_parent, free_port, stop_process, wait_port

from .common import (
    MP,
    ROOT,
    FormPoster,
    Redis,
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

SERVER_COUNTS = (1, 2, 4)
PEER_WORKERS = 2


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
            got.append(self.out.get(timeout=remaining))
        return got

    def stop(self) -> None:
        self.proc.kill()
        self.proc.join(5)


# -- ours -------------------------------------------------------------------------


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
    workers = 1 if backend == "sqlite" else 2
    rows: list[list] = []
    dispatch: list[float] = []
    try:
        for count in SERVER_COUNTS:
            node = setup.gunicorn(workers, 64)
            servers = [
                start_graderserver(
                    graderserver_config(
                        workdir / f"gs{count}-{i}.toml", node.url,
                        setup.server_token("t-c"), stamps.command,
                    ),
                    workdir / f"gs{count}-{i}.log",
                )
                for i in range(count)
            ]  # fmt: skip
            try:
                wait_listeners(setup, 1)
                tag = f"{backend}-{count}"
                spec = bench.token_spec()
                warm = make_tokens(spec, [sendjob_request(f"w{tag}-{i}") for i in range(10)])
                poster = FormPoster(node.url)
                for token in warm:
                    poster.post("/api.php", {"sToken": token, "sPlatform": bench.platform.name})
                receiver.collect(len(warm), 60)
                if count == PEER_WORKERS:
                    dispatch = sequential(args, bench, node.url, stamps, tag)
                    receiver.collect(args.e2e_dispatch_jobs, 60)
                stamps.drain()
                jobs = args.e2e_jobs
                tokens = make_tokens(spec, [sendjob_request(f"{tag}-{i}") for i in range(jobs)])
                senders = Senders(node.url, bench.platform.name, tokens, args.e2e_clients)
                pids = [*children_of(node.pid), *(p.pid for p in servers), receiver.proc.pid]
                cpu0 = cpu_seconds(pids) + own_cpu()
                senders.go()
                got = receiver.collect(jobs, 300)
                sent = senders.wait()
                cpu = cpu_seconds(pids) + own_cpu() - cpu0 + sent.client_cpu
                stamps.drain()
                uids = {uid for uid, _ in got}
                last = max(t for _, t in got)
                rate = jobs / (last - sent.began)
                note(f"  {backend}, {count} graderserver(s): {rate:.0f} jobs/s delivered")
                complete = len(uids) == jobs and sent.errors == 0
                name = f"graderqueue ({backend}), {count} graderserver(s)"
                rows.append([name, jobs, rate, cpu * 1000 / jobs, complete])
            finally:
                for proc in servers:
                    proc.kill()
                    proc.wait(10)
                node.stop()
    finally:
        receiver.stop()
        setup.close()
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


# -- peers -----------------------------------------------------------------------


def peer_env(redis_url: str, command: list[str]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_REDIS_URL": redis_url,
        "BENCH_COMMAND": json.dumps(command),
        "LC_ALL": "C",
    }


Procs = list[subprocess.Popen[bytes]]


def start_celery(redis_url: str, command: list[str], workdir: Path) -> Procs:
    procs = []
    for i in range(PEER_WORKERS):
        log = open(workdir / f"celery{i}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "scripts.bench.peer_tasks", "worker",
                 "--pool=solo", "-n", f"bench{i}@%h", "-Q", "bench", "-l", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=str(ROOT), env=peer_env(redis_url, command), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )
        )  # fmt: skip
    return procs


def start_rq(redis_url: str, command: list[str], workdir: Path) -> Procs:
    procs = []
    for i in range(PEER_WORKERS):
        log = open(workdir / f"rq{i}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "rq.cli", "worker", "-w", "rq.worker.SimpleWorker",
                 "-u", redis_url, "-q", "bench"],
                cwd=str(ROOT), env=peer_env(redis_url, command), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )
        )  # fmt: skip
    return procs


def celery_run(args, redis: Redis, stamps: StartStamps, workdir: Path):  # type: ignore[no-untyped-def]
    from .peer_tasks import client

    sender = client(redis.url)
    workers = start_celery(redis.url, stamps.command, workdir)
    try:
        for r in [sender.send_task("grade", args=[{"warm": i}]) for i in range(10)]:
            r.get(timeout=120)
        stamps.drain()
        latencies = []
        rng = random.Random(5)
        for i in range(args.e2e_dispatch_jobs):
            time.sleep(0.03 * (0.5 + rng.random()))
            result = sender.send_task("grade", args=[{"uid": f"c{i}"}])
            sent = time.time()
            latencies.append((stamps.next(30) - sent) * 1000)
            result.get(timeout=30)
        stamps.drain()
        pids = [*(p.pid for p in workers), redis.pid]
        cpu0 = cpu_seconds(pids) + own_cpu()
        began = time.time()
        results = [sender.send_task("grade", args=[{"uid": f"t{i}"}]) for i in range(args.e2e_jobs)]
        for result in results:
            result.get(timeout=300)
        rate = args.e2e_jobs / (time.time() - began)
        cpu = cpu_seconds(pids) + own_cpu() - cpu0
        stamps.drain()
        return rate, latencies, cpu * 1000 / args.e2e_jobs
    finally:
        for proc in workers:
            stop_process(proc)


def rq_run(args, redis: Redis, stamps: StartStamps, workdir: Path):  # type: ignore[no-untyped-def]
    from redis import Redis as Client
    from rq import Queue

    from .peer_tasks import rq_grade

    redis_url = redis.url
    connection = Client.from_url(redis_url)
    queue = Queue("bench", connection=connection)
    workers = start_rq(redis_url, stamps.command, workdir)

    def wait_finished(count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while queue.finished_job_registry.count < count:
            if time.monotonic() > deadline:
                raise RuntimeError("python-rq did not finish its jobs")
            time.sleep(0.01)

    try:
        for i in range(10):
            queue.enqueue(rq_grade, {"warm": i}, result_ttl=3600)
        wait_finished(10, 120)
        stamps.drain()
        latencies = []
        rng = random.Random(5)
        for i in range(args.e2e_dispatch_jobs):
            time.sleep(0.03 * (0.5 + rng.random()))
            queue.enqueue(rq_grade, {"uid": f"r{i}"}, result_ttl=3600)
            sent = time.time()
            latencies.append((stamps.next(30) - sent) * 1000)
        wait_finished(10 + args.e2e_dispatch_jobs)
        stamps.drain()
        done = queue.finished_job_registry.count
        pids = [*(p.pid for p in workers), redis.pid]
        cpu0 = cpu_seconds(pids) + own_cpu()
        began = time.time()
        for i in range(args.e2e_jobs):
            queue.enqueue(rq_grade, {"uid": f"t{i}"}, result_ttl=3600)
        wait_finished(done + args.e2e_jobs)
        rate = args.e2e_jobs / (time.time() - began)
        cpu = cpu_seconds(pids) + own_cpu() - cpu0
        stamps.drain()
        return rate, latencies, cpu * 1000 / args.e2e_jobs
    finally:
        for proc in workers:
            stop_process(proc)


# -- the table ---------------------------------------------------------------------


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
    table = []
    for name, jobs, rate, cpu, ok in rows:
        verdict = "PASS" if rate >= celery_rate else "MISS"
        table.append([name, jobs, rate, ratio(rate, celery_rate), ratio(rate, rq_rate), cpu,
                      verdict, "yes" if ok else "NO"])  # fmt: skip
    table.append([f"Celery + Redis, {PEER_WORKERS} solo workers", args.e2e_jobs, celery_rate,
                  "1.00", ratio(celery_rate, rq_rate), celery_cpu, "-", "-"])  # fmt: skip
    table.append([f"python-rq, {PEER_WORKERS} SimpleWorkers", args.e2e_jobs, rq_rate,
                  ratio(rq_rate, celery_rate), "1.00", rq_cpu, "-", "-"])  # fmt: skip
    print_table(
        "End to end: no-op jobs/s, sendjob -> result at the return URL (target >= 1.0x Celery)",
        [
            "system",
            "jobs",
            "jobs/s",
            "vs Celery",
            "vs rq",
            "CPU ms/job, all processes",
            "target",
            "all delivered once",
        ],
        table,
    )
    celery50 = pct(dispatch["Celery"], 50)
    drows = []
    for name, values in dispatch.items():
        p50 = pct(values, 50)
        verdict = "PASS" if p50 <= celery50 else "MISS"
        if name in ("Celery", "python-rq"):
            verdict = "-"
        drows.append([name, len(values), p50, pct(values, 99), ratio(p50, celery50), verdict])
    print_table(
        f"Dispatch with {PEER_WORKERS} idle workers: enqueue answer -> program start "
        "(target: p50 no worse than Celery's)",
        ["system", "jobs", "p50 ms", "p99 ms", "p50 vs Celery", "target"],
        drows,
    )
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--e2e-jobs", type=int, default=600, help="jobs per throughput run")
    parser.add_argument("--e2e-clients", type=int, default=2, help="platform client processes")
    parser.add_argument("--e2e-dispatch-jobs", type=int, default=150)
