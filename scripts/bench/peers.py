"""The peers of the end-to-end benchmark: Celery and python-rq on a throwaway Redis.

Each runs the same grading program the same way as the queue's graderservers
(``peer_tasks``), 2 workers; the clock runs from the first enqueue to the
last result stored. Dispatch: one task at a time with the workers idle, from
the return of ``send_task()``/``enqueue()`` to the program's first line.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.processes import die_with_parent, stop_process

from .common import ROOT, Redis, StartStamps, cpu_seconds, own_cpu

PEER_WORKERS = 2


def peer_env(redis_url: str, command: list[str]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_REDIS_URL": redis_url,
        "BENCH_COMMAND": json.dumps(command),
        "LC_ALL": "C",
    }


Procs = list[subprocess.Popen[bytes]]


def _start_workers(name: str, argv: Callable[[int], list[str]], env: dict[str, str],
                   workdir: Path) -> Procs:  # fmt: skip
    """PEER_WORKERS worker processes ``python -m argv(i)``, each logging to workdir."""
    procs = []
    for i in range(PEER_WORKERS):
        log = open(workdir / f"{name}{i}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", *argv(i)], cwd=str(ROOT), env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        )  # fmt: skip
    return procs


def start_celery(redis_url: str, command: list[str], workdir: Path) -> Procs:
    return _start_workers(
        "celery",
        lambda i: ["celery", "-A", "scripts.bench.peer_tasks", "worker", "--pool=solo",
                   "-n", f"bench{i}@%h", "-Q", "bench", "-l", "WARNING",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"],
        peer_env(redis_url, command),
        workdir,
    )  # fmt: skip


def start_rq(redis_url: str, command: list[str], workdir: Path) -> Procs:
    return _start_workers(
        "rq",
        lambda i: ["rq.cli", "worker", "-w", "rq.worker.SimpleWorker", "-u", redis_url,
                   "-q", "bench"],
        peer_env(redis_url, command),
        workdir,
    )  # fmt: skip


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
