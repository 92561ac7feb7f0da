"""Enqueue: sendjob requests/s with real RSA-2048 tokens, next to the crypto ceiling.

For each backend and gunicorn shape (workers x threads, examples/gunicorn.conf.py),
the same pre-made tokens go first to a bare Flask endpoint that only opens
them (scripts/bench/ceiling_app.py, the ceiling), then to the queue's
/api.php. Tokens are sealed in helper processes before the clock starts, so
the client's RSA signing is not counted; what the clients still spend (an
http.client POST per request, ~0.1 ms) runs on the same two cores as the
server, for both figures alike.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from harness.processes import Gunicorn, documented_gunicorn

from .common import (
    Senders,
    Unavailable,
    children_of,
    cpu_seconds,
    database,
    make_queue,
    make_tokens,
    note,
    print_table,
    ratio,
    sendjob_request,
    tmpdir,
)

TARGET = 0.6
SHAPES = {"sqlite": [(1, 64), (2, 64)], "mariadb": [(2, 64), (1, 64)]}


def ceiling_server(bench, workdir: Path, workers: int, threads: int) -> Gunicorn:  # type: ignore[no-untyped-def]
    pub = workdir / "platform.pub.pem"
    pub.write_text(bench.platform.public_pem)
    server = documented_gunicorn(
        "scripts.bench.ceiling_app:app",
        {"BENCH_QUEUE_KEY": str(bench.queue_private_path), "BENCH_PLATFORM_PUB": str(pub)},
        workers=workers,
        threads=threads,
    )
    return server.start()


def measure(server: Gunicorn, bench, tokens: list[str], args):  # type: ignore[no-untyped-def]
    """Send the tokens; also returns the web workers' CPU ms per request."""
    senders = Senders(
        server.url, bench.platform.name, tokens, args.enqueue_clients,
        warm=args.enqueue_warm, conns=args.enqueue_conns,
    )  # fmt: skip
    workers = children_of(server.pid)  # type: ignore[arg-type]
    before = cpu_seconds(workers)
    got = senders.run()
    return got, (cpu_seconds(workers) - before) * 1000 / len(got.timings)


def run(args: argparse.Namespace) -> list[list]:
    rows: list[list] = []
    for backend in args.backends:
        workdir = tmpdir(f"enqueue-{backend}")
        try:
            with database(backend, workdir) as url:
                bench = make_queue(workdir, url)
                try:
                    for workers, threads in SHAPES[backend]:
                        rows.append(one_shape(args, bench, workdir, backend, workers, threads))
                finally:
                    bench.setup.close()
        except Unavailable as exc:
            note(f"enqueue on {backend}: skipped ({exc})")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(
        "Enqueue: sendjob/s with RSA-2048 tokens (target >= 0.6 of the ceiling)",
        ["backend", "workers x threads", "clients x conns", "sendjob/s", "ceiling req/s", "ratio",
         "target", "sendjob p50 ms", "p99 ms", "ceiling p50 ms", "server CPU ms/sendjob",
         "ceiling CPU ms/req", "errors"],
        rows,
    )  # fmt: skip
    return rows


def one_shape(args, bench, workdir: Path, backend: str, workers: int, threads: int) -> list:  # type: ignore[no-untyped-def]
    tag = f"{backend}-{workers}x{threads}"
    conns = args.enqueue_clients * args.enqueue_conns
    total = (args.enqueue_requests // conns + args.enqueue_warm) * conns
    tokens = make_tokens(bench.token_spec(), [sendjob_request(f"{tag}-{i}") for i in range(total)])

    ceiling = ceiling_server(bench, workdir, workers, threads)
    try:
        top, top_cpu = measure(ceiling, bench, tokens, args)
    finally:
        ceiling.stop()
    server = bench.setup.gunicorn(workers, threads)
    try:
        got, got_cpu = measure(server, bench, tokens, args)
    finally:
        server.stop()
    value = got.rate / top.rate
    note(f"  {tag}: {got.rate:.0f} sendjob/s vs ceiling {top.rate:.0f} req/s ({value:.2f})")
    return [
        backend, f"{workers} x {threads}", f"{args.enqueue_clients} x {args.enqueue_conns}",
        got.rate, top.rate,
        ratio(got.rate, top.rate), "PASS" if value >= TARGET else "MISS",
        got.latency_ms(50), got.latency_ms(99), top.latency_ms(50), got_cpu, top_cpu,
        got.errors + top.errors,
    ]  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--enqueue-requests", type=int, default=2000, help="timed sendjobs per run")
    parser.add_argument("--enqueue-clients", type=int, default=4, help="client processes")
    parser.add_argument("--enqueue-conns", type=int, default=4, help="connections per client")
    parser.add_argument("--enqueue-warm", type=int, default=10, help="untimed requests per conn")
