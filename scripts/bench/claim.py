"""Claim at depth: claim latency and claims/s with 1,000 and 1,000,000 queued jobs.

Jobs are spread over 20 server types, with random priorities 0..4, bulk
inserted with executemany straight into ``jobs`` and ``job_types`` (the
``job_types`` copies of status and priority match, as enqueue.enqueue keeps
them). Two ways of claiming are timed at each depth:

- ``claim.claim()`` in-process, one thread, one transaction per claim: the
  database cost alone;
- ``/poll.php`` over HTTP through gunicorn (examples/gunicorn.conf.py), with
  server tokens and several concurrent pollers: what a grading server sees.

A round claims a few hundred jobs (round-robin over the types), then puts
exactly those jobs back to ``queued`` untimed, so the depth stays what the
table says. The reference of each million-job figure is the thousand-job one
of the same run, same database.
"""

from __future__ import annotations

import argparse
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from graderqueue.queue.fair_share import STEP

from .common import (
    FormPoster,
    Unavailable,
    database,
    make_queue,
    note,
    pct,
    print_table,
    ratio,
    tmpdir,
)

TYPES = 20
TARGET = 1.3  # the million-job figure within 1.3x of the thousand-job one
BATCH = 10_000
JOB_COLUMNS = [
    "id", "name", "jobusertaskid", "dedup_key", "status", "priority", "timeout_sec",
    "nb_fails", "received_time", "tags", "taskrevision", "jobdata", "job_repeats",
    "received_via",
]  # fmt: skip


def fill(db, first_id: int, count: int, type_ids: list[int], rng: random.Random) -> float:  # type: ignore[no-untyped-def]
    """Insert jobs first_id.. first_id+count-1 as queued; returns the seconds it took."""
    from graderqueue.store.models import utcnow

    began = time.monotonic()
    sqlite = db.dialect == "sqlite"
    mark = "?" if sqlite else "%s"
    now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        job_sql = (
            f"INSERT INTO jobs ({','.join(JOB_COLUMNS)}) "
            f"VALUES ({','.join([mark] * len(JOB_COLUMNS))})"
        )
        type_sql = (
            "INSERT INTO job_types (job_id, type_id, status, priority, vstart) "
            f"VALUES ({mark},{mark},{mark},{mark},{mark})"
        )
        for start in range(first_id, first_id + count, BATCH):
            stop = min(start + BATCH, first_id + count)
            priorities = [rng.randrange(5) for _ in range(start, stop)]
            jobs_rows = [
                (i, f"j{i}", f"u{i}", f"u{i}", "queued", p, 300, 0, now, "", "", "{}", 0, "")
                for i, p in zip(range(start, stop), priorities, strict=True)
            ]
            # Fair share's places in line as three platforms of equal weight
            # sending in turn would get them (queue/fair_share.py).
            type_rows = [
                (i, rng.choice(type_ids), "queued", p, (i // 3) * STEP + i % 3)
                for i, p in zip(range(start, stop), priorities, strict=True)
            ]
            if sqlite:
                cur.execute("BEGIN")
            cur.executemany(job_sql, jobs_rows)
            cur.executemany(type_sql, type_rows)
            raw.commit()
        if not sqlite:
            # InnoDB keeps statistics by itself; make them current after a bulk load.
            # SQLite has none unless someone runs ANALYZE (see analyzed_row()).
            cur.execute("ANALYZE TABLE jobs, job_types")
            cur.fetchall()
        cur.close()
    finally:
        raw.close()
    return time.monotonic() - began


def requeue(db, job_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Put claimed jobs back exactly as they were (untimed, between rounds)."""
    from sqlalchemy import update

    from graderqueue.store.models import Job, JobType

    with db.transaction() as session:
        for start in range(0, len(job_ids), 500):
            ids = job_ids[start : start + 500]
            session.execute(
                update(Job)
                .where(Job.id.in_(ids))
                .values(status="queued", sent_to=None, lease_expires=None,
                        grading_start_time=None)
            )  # fmt: skip
            session.execute(update(JobType).where(JobType.job_id.in_(ids)).values(status="queued"))


Claims = tuple[list[float], list[int]]


def domain_round(bench, servers: list[tuple[int, int]], claims: int) -> Claims:  # type: ignore[no-untyped-def]
    from graderqueue.queue import claim

    db = bench.setup.db
    settings = bench.setup.settings
    skip_locked = db.dialect != "sqlite"
    latencies: list[float] = []
    claimed: list[int] = []
    for n in range(claims):
        server_id, type_id = servers[n % len(servers)]
        t0 = time.perf_counter()
        with db.transaction() as session:
            job = claim.claim(
                session, server_id, type_id, max_fails=settings.max_fails, skip_locked=skip_locked
            )
        latencies.append(time.perf_counter() - t0)
        if job is None:
            raise RuntimeError(f"no job to claim for type {type_id}: the queue ran dry")
        claimed.append(job.id)
    return latencies, claimed


def http_round(
    url: str, tokens: list[str], pollers: int, claims: int
) -> tuple[list[float], list[int], float]:
    latencies: list[float] = []
    claimed: list[int] = []
    errors: list[Any] = []
    lock = threading.Lock()
    start = threading.Barrier(pollers + 1)

    def poller(index: int) -> None:
        poster = FormPoster(url)
        mine = tokens[index::pollers]
        start.wait()
        for n in range(claims // pollers):
            t0 = time.perf_counter()
            answer = poster.post("/poll.php", {"server_token": mine[n % len(mine)], "nbtasks": "1"})
            elapsed = time.perf_counter() - t0
            with lock:
                if answer.get("errorcode") != 0:
                    errors.append(answer)
                    continue
                latencies.append(elapsed)
                claimed.append(int(answer["jobid"]))
        poster.close()

    threads = [threading.Thread(target=poller, args=(i,)) for i in range(pollers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(300)
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} polls failed, first: {errors[0]}")
    return latencies, claimed, wall


def measure(args, bench, server, servers, tokens) -> dict[str, float]:  # type: ignore[no-untyped-def]
    db = bench.setup.db
    out: dict[str, float] = {}
    lat: list[float] = []
    busy = 0.0
    domain_round(bench, servers, 20)  # warm the caches of this depth, untimed
    for _ in range(args.claim_rounds):
        round_lat, ids = domain_round(bench, servers, args.claim_claims)
        lat += round_lat
        busy += sum(round_lat)
        requeue(db, ids)
    out["claim_p50"] = pct(lat, 50) * 1000
    out["claim_p99"] = pct(lat, 99) * 1000
    out["claim_rate"] = len(lat) / busy
    lat, wall_total = [], 0.0
    for _ in range(args.claim_rounds):
        round_lat, ids, wall = http_round(server.url, tokens, args.claim_pollers, args.claim_claims)
        lat += round_lat
        wall_total += wall
        requeue(db, ids)
    out["poll_p50"] = pct(lat, 50) * 1000
    out["poll_p99"] = pct(lat, 99) * 1000
    out["poll_rate"] = len(lat) / wall_total
    return out


def prepare(bench) -> tuple[list[int], list[tuple[int, int]], list[str]]:  # type: ignore[no-untyped-def]
    from graderqueue.registry import actions as registry

    type_ids, servers, tokens = [], [], []
    with bench.setup.db.transaction() as session:
        for i in range(TYPES):
            type_ids.append(registry.add_type(session, f"bulk{i}", ["c"]).id)
            server = registry.add_server(
                session, f"claimer{i}", f"bulk{i}", ssl_serial=f"{i + 1:x}",
                ssl_dn="CN=bench", max_jobs=0,
            )  # fmt: skip
            servers.append((server.id, type_ids[-1]))
            tokens.append(
                registry.add_server_token(session, f"poller{i}", f"bulk{i}", max_jobs=0).token
            )
    return type_ids, servers, tokens


def run(args: argparse.Namespace) -> list[list]:
    rows: list[list] = []
    depths = [1000, args.claim_depth]
    for backend in args.backends:
        workdir = tmpdir(f"claim-{backend}")
        try:
            with database(backend, workdir) as url:
                rows += one_backend(args, workdir, url, backend, depths)
        except Unavailable as exc:
            note(f"claim on {backend}: skipped ({exc})")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(
        f"Claim at depth, 20 server types (target: {args.claim_depth:,} within "
        f"{TARGET}x of 1,000)",
        ["backend", "queued jobs", "claim() p50 ms", "p99 ms", "claims/s", "vs 1k",
         "poll p50 ms", "poll p99 ms", "polls/s", "vs 1k", "target"],
        rows,
    )  # fmt: skip
    return rows


def one_backend(args, workdir: Path, url: str, backend: str, depths: list[int]) -> list[list]:  # type: ignore[no-untyped-def]
    bench = make_queue(workdir, url)
    rng = random.Random(7)
    rows: list[list] = []
    try:
        type_ids, servers, tokens = prepare(bench)
        server = bench.setup.gunicorn(args.claim_workers.get(backend, 2), 64)
        reference: dict[str, float] | None = None
        filled = 0
        for depth in depths:
            took = fill(bench.setup.db, filled + 1, depth - filled, type_ids, rng)
            note(f"  {backend}: filled to {depth:,} queued jobs in {took:.0f} s")
            filled = depth
            got = measure(args, bench, server, servers, tokens)
            reference = reference or got
            slower = max(
                reference["claim_rate"] / got["claim_rate"],
                reference["poll_rate"] / got["poll_rate"],
            )
            rows.append([
                backend, depth, got["claim_p50"], got["claim_p99"], got["claim_rate"],
                ratio(got["claim_rate"], reference["claim_rate"]), got["poll_p50"],
                got["poll_p99"], got["poll_rate"], ratio(got["poll_rate"], reference["poll_rate"]),
                "PASS" if slower <= TARGET else "MISS",
            ])  # fmt: skip
            note(f"  {backend} @ {depth:,}: {got}")
        if backend == "sqlite":
            rows.append(analyzed_row(args, bench, server, servers, tokens, reference, depths[-1]))
        server.stop()
    finally:
        bench.setup.close()
    return rows


def analyzed_row(args, bench, server, servers, tokens, reference, depth: int) -> list:  # type: ignore[no-untyped-def]
    """The same depth after ``ANALYZE``: SQLite's statistics then see one status in jobs.

    With every job queued, sqlite_stat1 says ``status = 'sent'`` matches all
    rows, and the planner drives the expired-lease lookup of claim.claim from
    job_types (all jobs of the type) instead of ix_jobs_status_lease.
    """
    raw = bench.setup.db.engine.raw_connection()
    try:
        raw.cursor().execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    bench.setup.db.engine.dispose()
    got = measure(args, bench, server, servers, tokens)
    note(f"  sqlite @ {depth:,} after ANALYZE: {got}")
    slower = max(
        reference["claim_rate"] / got["claim_rate"], reference["poll_rate"] / got["poll_rate"]
    )
    return [
        "sqlite after ANALYZE", depth, got["claim_p50"], got["claim_p99"], got["claim_rate"],
        ratio(got["claim_rate"], reference["claim_rate"]), got["poll_p50"], got["poll_p99"],
        got["poll_rate"], ratio(got["poll_rate"], reference["poll_rate"]),
        "PASS" if slower <= TARGET else "MISS",
    ]  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--claim-depth", type=int, default=1_000_000, help="the deep queue")
    parser.add_argument("--claim-rounds", type=int, default=3, help="timed rounds per depth")
    parser.add_argument("--claim-claims", type=int, default=200, help="claims per round")
    parser.add_argument("--claim-pollers", type=int, default=4, help="concurrent HTTP pollers")
    parser.set_defaults(claim_workers={"sqlite": 1, "mariadb": 2})
