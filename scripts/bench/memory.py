"""Memory: peak RSS (VmHWM) of a web worker after load, and of an idle graderserver.

The app runs as documented (examples/gunicorn.conf.py, 2 workers x 64
threads, SQLite); it takes sendjobs from client processes while 4
graderservers grade them, then every worker's VmHWM is read. References in
the same run: a worker of the bare crypto endpoint (scripts/bench/ceiling_app.py)
after the same tokens, and a Celery solo worker after a few tasks.
"""

from __future__ import annotations

import argparse
import shutil
import time

from harness.processes import stop_process

from .common import (
    Senders,
    StartStamps,
    children_of,
    graderserver_config,
    make_queue,
    make_tokens,
    note,
    peak_rss_mib,
    print_table,
    ratio,
    redis_server,
    sendjob_request,
    start_graderserver,
    tmpdir,
    wait_listeners,
)
from .enqueue import ceiling_server
from .peer_tasks import client
from .peers import start_celery


def run(args: argparse.Namespace) -> list[list]:
    workdir = tmpdir("memory")
    rows: list[list] = []
    try:
        bench = make_queue(workdir, "")
        setup = bench.setup
        tokens = make_tokens(
            bench.token_spec(), [sendjob_request(f"m{i}") for i in range(args.memory_jobs)]
        )
        ceiling = ceiling_server(bench, workdir, 2, 64)
        Senders(ceiling.url, bench.platform.name, tokens, 4).run()
        ceiling_rss = max(peak_rss_mib(pid) for pid in children_of(ceiling.pid))
        ceiling.stop()

        node = setup.gunicorn(2, 64)
        servers = [
            start_graderserver(
                graderserver_config(
                    workdir / f"gs{i}.toml", node.url, setup.server_token("t-c"), ["cat"]
                ),
                workdir / f"gs{i}.log",
            )
            for i in range(4)
        ]
        idle = start_graderserver(
            graderserver_config(
                workdir / "idle.toml", node.url, setup.server_token("t-c"), ["cat"]
            ),
            workdir / "idle.log",
        )
        wait_listeners(setup, 1)
        Senders(node.url, bench.platform.name, tokens, 4).run()
        time.sleep(2)  # let the graderservers finish what is queued
        workers = children_of(node.pid)
        app_rss = [peak_rss_mib(pid) for pid in workers]
        busy_gs = max(peak_rss_mib(p.pid) for p in servers)
        idle_gs = peak_rss_mib(idle.pid)
        for proc in [*servers, idle]:
            proc.kill()
            proc.wait(10)
        node.stop()
        setup.close()

        stamps = StartStamps(workdir)
        with redis_server(workdir) as redis:
            url = redis.url
            celery = start_celery(url, ["cat"], workdir)
            sender = client(url)
            for result in [sender.send_task("grade", args=[{"m": i}]) for i in range(20)]:
                result.get(timeout=120)
            celery_rss = max(peak_rss_mib(p.pid) for p in celery)
            for proc in celery:
                stop_process(proc)
        stamps.close()
        rows = [
            ["web worker (gunicorn gthread, 64 threads), after load", max(app_rss),
             f"{len(workers)} workers: " + ", ".join(f"{r:.0f}" for r in app_rss),
             ratio(max(app_rss), ceiling_rss)],
            ["  reference: bare crypto endpoint worker, same tokens", ceiling_rss, "", "1.00"],
            ["graderserver, idle (long-polling, -l)", idle_gs, "", ratio(idle_gs, celery_rss)],
            ["graderserver, after grading jobs", busy_gs, "", ratio(busy_gs, celery_rss)],
            ["  reference: Celery solo worker after 20 tasks", celery_rss, "", "1.00"],
        ]  # fmt: skip
        note(f"  sendjobs per run: {args.memory_jobs}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(
        "Memory: peak RSS (VmHWM), MiB",
        ["process", "peak RSS MiB", "detail", "vs its reference"],
        rows,
    )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory-jobs", type=int, default=1000, help="sendjobs before reading")
