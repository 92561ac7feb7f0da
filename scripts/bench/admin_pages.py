#!/usr/bin/env python3
"""Admin pages: each page's time with a million done jobs, cold and warm.

Not in the default run (``scripts/bench/run admin-pages`` runs it): it times
no queue work, only what an operator waits for. Fills a fresh SQLite
database and a throwaway ``gqtest_`` MariaDB database (on this machine) with
done jobs spread over the last two weeks, a live queue, servers and events.
Then it renders every admin page in-process (Flask test client: no socket
is opened) and prints, per page, the median time of a cold view (the app's
caches emptied first) and of a warm one.

    scripts/bench/run admin-pages                          # 1,000,000 done jobs
    scripts/bench/run admin-pages --admin-rows 100000 --backends sqlite
    scripts/bench/run admin-pages --admin-keep             # keep the databases
    scripts/bench/run admin-pages --admin-reuse-sqlite DIR --admin-reuse-mariadb URL
                                                           # time kept fills again

The fill is plain executemany of one INSERT in batches on a raw driver
connection: about 100 s per million jobs on SQLite, 150 s on MariaDB.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from graderqueue.config import Settings
from graderqueue.identity import passwords
from graderqueue.protocol import keys
from graderqueue.registry import actions as registry
from graderqueue.store.db import Database
from graderqueue.store.models import AdminUser, Job, utcnow
from harness.queue import QueueSetup

from .common import Unavailable, mariadb_base, note, print_table

BATCH = 5000
SPAN = timedelta(days=14)
LANGUAGES = ["c", "cpp", "python", "java", "ocaml"]
N_TASKS = 300
N_SERVERS = 24
N_PLATFORMS = 3
N_EVENTS = 50_000
# Live jobs: what a busy queue holds at once.
N_QUEUED, N_SENT, N_ERROR = 2000, 20, 100

ADMIN_USER, ADMIN_PASSWORD = "bench", "bench-password"


class _Writer:
    """Plain executemany on one raw driver connection: the fastest bulk path both drivers have."""

    def __init__(self, db: Database) -> None:
        self.sqlite = db.dialect == "sqlite"
        self.raw = db.engine.raw_connection()
        self.cur = self.raw.cursor()
        self.open = False
        if not self.sqlite:
            # This session only: the rows are known to be consistent.
            self.cur.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")

    def insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        if not rows:
            return
        if self.sqlite and not self.open:
            self.cur.execute("BEGIN")
        self.open = True
        marks = ",".join(["?" if self.sqlite else "%s"] * len(columns))
        self.cur.executemany(f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})", rows)

    def commit(self) -> None:
        if self.open:
            self.raw.commit()
        self.open = False

    def close(self) -> None:
        self.commit()
        self.cur.close()
        self.raw.close()


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def setup_registry(db: Database) -> dict[str, Any]:
    """Tags, types, platforms, servers and an admin user, through the normal functions."""
    with db.transaction() as session:
        for tag in ("c", "java", "gpu"):
            registry.add_tag(session, tag)
        type_ids = [
            registry.add_type(session, "t-c", ["c"]).id,
            registry.add_type(session, "t-java", ["c", "java"]).id,
        ]
        platform_ids = []
        for i in range(N_PLATFORMS):
            _private, public = keys.generate_rsa_pem()
            # A return URL: the deliveries page has an outbox of a million rows to read.
            platform = registry.add_platform(
                session,
                f"platform{i + 1}",
                public.decode(),
                return_url=f"http://127.0.0.1:9/platform{i + 1}",
            )
            platform_ids.append(platform.id)
        server_ids = []
        for i in range(N_SERVERS):
            server = registry.add_server(
                session,
                f"grader{i + 1:02d}",
                "t-c" if i % 3 else "t-java",
                ssl_serial=f"{i + 16:x}",
                ssl_dn="CN=Bench CA,O=graderqueue",
                wakeup_url=f"udp://127.0.0.1:{40000 + i}",
                max_jobs=2,
            )
            server.last_poll_time = utcnow() - timedelta(seconds=random.randint(0, 120))
            server.wakeup_fails = 1 if i % 7 == 0 else 0
            server_ids.append(server.id)
        session.add(
            AdminUser(username=ADMIN_USER, password_hash=passwords.hash_password(ADMIN_PASSWORD))
        )
    return {"types": type_ids, "platforms": platform_ids, "servers": server_ids}


JOB_COLUMNS = [
    "id", "platform_id", "received_via", "name", "jobusertaskid", "dedup_key", "job_repeats",
    "status", "priority", "timeout_sec", "nb_fails", "received_time", "sent_to",
    "grading_start_time", "lease_expires", "grading_end_time", "tags", "taskrevision", "jobdata",
]  # fmt: skip
TYPE_COLUMNS = ["job_id", "type_id", "status", "priority"]
RESULT_COLUMNS = [
    "job_id", "resultdata", "cpu_time_ms", "real_time_ms", "max_real_time_ms", "is_success",
    "task_path", "task_name", "language", "verdict",
]  # fmt: skip
DELIVERY_COLUMNS = [
    "job_id", "platform_id", "state", "attempts", "next_attempt_at", "created_at",
    "last_attempt_at", "delivered_at", "last_error",
]  # fmt: skip
# One done job in this many is a grader error; one in PENDING_EVERY still owes its
# result to platform1 (a platform whose return URL fails).
GRADER_ERROR_EVERY = 100
PENDING_EVERY = 2000


def fill(db: Database, done_rows: int, reg: dict[str, Any], seed: int = 1) -> float:
    """Insert ``done_rows`` done jobs over two weeks, then a live queue; returns seconds."""
    began = time.perf_counter()
    rng = random.Random(seed)
    start = utcnow() - SPAN
    step = SPAN / max(done_rows, 1)
    tasks = [f"/tasks/contest{t % 12}/task{t:03d}" for t in range(N_TASKS)]
    resultdata = json.dumps({"errorcode": 0, "errormsg": "ok", "jobdata": {"executions": []}})
    writer = _Writer(db)
    try:
        for first in range(0, done_rows, BATCH):
            jobs, results, types, owed = [], [], [], []
            for job_id in range(first + 1, min(first + BATCH, done_rows) + 1):
                received = start + step * (job_id - 1)
                sent = received + timedelta(milliseconds=rng.randint(5, 4000))
                ended = sent + timedelta(milliseconds=rng.randint(200, 9000))
                task = tasks[rng.randrange(N_TASKS)]
                lang = LANGUAGES[rng.randrange(len(LANGUAGES))]
                jobdata = json.dumps({"taskPath": task, "extraParams": {"solutionLanguage": lang}})
                jobs.append(
                    (
                        job_id, reg["platforms"][job_id % N_PLATFORMS], "platform",
                        f"sub-{job_id}", f"uid-{job_id}", None, 0, "done", rng.randint(0, 3),
                        300, 1 if job_id % 97 == 0 else 0, _ts(received),
                        reg["servers"][job_id % N_SERVERS], _ts(sent), None, _ts(ended), "c",
                        "r1", jobdata,
                    )
                )  # fmt: skip
                cpu = rng.randint(1, 5000)
                passed = rng.random() < 0.7
                verdict = (
                    "grader_error"
                    if job_id % GRADER_ERROR_EVERY == 0
                    else ("passed" if passed else "failed")
                )
                results.append(
                    (
                        job_id, resultdata, cpu, cpu + rng.randint(0, 500), cpu // 3,
                        passed, task, task.rsplit("/", 1)[1], lang, verdict,
                    )
                )  # fmt: skip
                owed.append(_delivery(job_id, reg["platforms"][job_id % N_PLATFORMS], ended))
                types.append((job_id, reg["types"][0], "done", 0))
                if job_id % 4 == 0:
                    types.append((job_id, reg["types"][1], "done", 0))
            writer.insert("jobs", JOB_COLUMNS, jobs)
            writer.insert("results", RESULT_COLUMNS, results)
            writer.insert("job_types", TYPE_COLUMNS, types)
            writer.insert("deliveries", DELIVERY_COLUMNS, owed)
            writer.commit()
        fill_live(writer, done_rows, reg, rng)
        fill_events(writer, done_rows, reg, rng)
    finally:
        writer.close()
    return time.perf_counter() - began


def _delivery(job_id: int, platform_id: int, ended: datetime) -> tuple:
    """The outbox row of a done job: delivered, or still failing for one in PENDING_EVERY."""
    if job_id % PENDING_EVERY == 0:
        retry = ended + timedelta(hours=1)
        return (
            job_id, platform_id, "pending", 12, _ts(retry), _ts(ended), _ts(ended),
            None, "connection refused",
        )  # fmt: skip
    at = _ts(ended + timedelta(milliseconds=40))
    return (job_id, platform_id, "delivered", 1, _ts(ended), _ts(ended), at, at, "")


def fill_live(writer: _Writer, first_id: int, reg: dict[str, Any], rng: random.Random) -> None:
    now = utcnow()
    live: list[tuple] = []
    types: list[tuple] = []
    statuses = ["queued"] * N_QUEUED + ["sent"] * N_SENT + ["error"] * N_ERROR
    for offset, status in enumerate(statuses):
        job_id = first_id + offset + 1
        received = now - timedelta(seconds=rng.randint(1, 3600))
        sent = status == "sent"
        live.append(
            (
                job_id, reg["platforms"][job_id % N_PLATFORMS], "platform", f"live-{job_id}",
                f"uid-{job_id}", f"uid-{job_id}", 0, status, rng.randint(0, 5), 300,
                2 if status == "error" else 0, _ts(received),
                reg["servers"][job_id % N_SERVERS] if sent else None,
                _ts(now) if sent else None, _ts(now + timedelta(seconds=300)) if sent else None,
                None, "c", "r1", json.dumps({"taskPath": "/tasks/live"}),
            )
        )  # fmt: skip
        types.append((job_id, reg["types"][0], status, 0))
    writer.insert("jobs", JOB_COLUMNS, live)
    writer.insert("job_types", TYPE_COLUMNS, types)
    writer.commit()


def fill_events(writer: _Writer, done_rows: int, reg: dict[str, Any], rng: random.Random) -> None:
    now = utcnow()
    kinds = ["error_timeout", "error_in_result", "wakeup_failed", "wakeup_ok", "requeued"]
    for first in range(0, N_EVENTS, BATCH):
        writer.insert(
            "events",
            ["time", "kind", "job_id", "server_id", "message"],
            [
                (
                    _ts(now - SPAN + SPAN * (i / N_EVENTS)),
                    kinds[i % len(kinds)],
                    rng.randint(1, max(done_rows, 1)),
                    reg["servers"][i % N_SERVERS],
                    f"bench event {i}",
                )
                for i in range(first, min(first + BATCH, N_EVENTS))
            ],
        )
        writer.commit()


# -- timing pages --------------------------------------------------------------


@dataclass
class Timing:
    cold: float
    warm: float


def _pages(db: Database, done_rows: int) -> list[tuple[str, str]]:
    """(label, path) of every page to time, with cursors and values from this fill."""
    from graderqueue.admin.keyset import Cursor

    middle = max(1, done_rows // 2)
    with db.reading() as session:
        ended = session.scalar(select(Job.grading_end_time).where(Job.id == middle))
        oldest = session.scalar(select(func.min(Job.grading_end_time)))
    deep = Cursor(ended, middle).encode() if ended else ""
    day = (oldest or utcnow()) + timedelta(days=3)
    pages = [
        ("dashboard, 15 minutes", "/admin/?window=15m"),
        ("dashboard, 1 hour", "/admin/?window=1h"),
        ("dashboard, 1 day", "/admin/?window=1d"),
        ("dashboard, 1 week", "/admin/?window=1w"),
        ("dashboard, 2 weeks", "/admin/?window=2w"),
        ("servers", "/admin/servers"),
        ("queued jobs", "/admin/jobs/queued"),
        ("queued jobs, status+platform", "/admin/jobs/queued?status=queued&platform=2"),
        ("queued jobs, claim order, every type", "/admin/jobs/queued?status=queued"),
        ("queued jobs, claim order, one type", "/admin/jobs/queued?status=queued&type=t-java"),
        ("queued jobs, in error", "/admin/jobs/queued?status=error"),
        ("types (overview)", "/admin/types"),
        ("servers, lost only", "/admin/servers?state=lost"),
        ("registry", "/admin/registry"),
        ("done jobs, first page", "/admin/jobs/done"),
        ("done jobs, page at 1 week ago", f"/admin/jobs/done?before={deep}"),
        ("done jobs, platform", "/admin/jobs/done?platform=2"),
        ("done jobs, server", "/admin/jobs/done?server=5"),
        ("done jobs, rare name (full scan budget)", "/admin/jobs/done?name=sub-1x"),
        (
            "done jobs, one day 11 days ago",
            f"/admin/jobs/done?since={day:%Y-%m-%dT%H:%M:%S}"
            f"&until={day + timedelta(days=1):%Y-%m-%dT%H:%M:%S}",
        ),
        ("done jobs, grader errors", "/admin/jobs/done?result=grader_error"),
        ("done jobs, failed in java", "/admin/jobs/done?result=failed&language=java"),
        ("done jobs, grader errors of a task", "/admin/jobs/done?result=grader_error&task=task007"),
        ("deliveries", "/admin/deliveries"),
        ("deliveries, one platform", "/admin/deliveries?platform=platform1"),
        ("job page", f"/admin/jobs/{middle}"),
        ("events", "/admin/events"),
        ("events, kind", "/admin/events?kind=wakeup_failed"),
        ("events, severity error", "/admin/events?severity=error"),
        ("events, severity info", "/admin/events?severity=info"),
        ("events, rare text", "/admin/events?text=no+such+text"),
        ("task statistics, 1 hour", "/admin/stats?window=1h"),
        ("task statistics, 1 day", "/admin/stats?window=1d"),
        ("task statistics, 2 weeks", "/admin/stats?window=2w&group=language"),
        ("send-job form", "/admin/send"),
    ]
    return pages


def time_pages(settings: Settings, db: Database, done_rows: int, repeat: int) -> dict[str, Timing]:
    from graderqueue.web import create_app
    from graderqueue.web.admin.cache import AdminState

    app = create_app(settings)
    client = app.test_client()
    login = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)  # type: ignore[union-attr]
    form = {"username": ADMIN_USER, "password": ADMIN_PASSWORD, "csrf_token": token}
    if client.post("/admin/login", data=form).status_code != 302:
        raise SystemExit("cannot log in to the benchmark app")

    def view(path: str) -> float:
        began = time.perf_counter()
        answer = client.get(path)
        took = time.perf_counter() - began
        if answer.status_code != 200:
            raise SystemExit(f"{path}: HTTP {answer.status_code}")
        return took

    results: dict[str, Timing] = {}
    for label, path in _pages(db, done_rows):
        cold, warm = [], []
        for _ in range(repeat):
            app.extensions[AdminState.KEY] = AdminState()  # empty caches: a cold view
            cold.append(view(path))
            warm.append(view(path))
        results[label] = Timing(statistics.median(cold), statistics.median(warm))
        note(f"  {label:<42} cold {results[label].cold * 1000:8.1f} ms")
    rt = app.extensions["graderqueue"]
    rt.hints.close()
    rt.db.dispose()
    return results


# -- databases -------------------------------------------------------------------------

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def prepare(instance: Path, database_url: str, rows: int, reuse: bool) -> QueueSetup:
    """The queue to time; filled unless ``reuse`` (then its schema and keys are kept)."""
    setup = QueueSetup(
        instance,
        database_url,
        session_cookie_secure=False,
        send_job_form=True,
        # The outbox holds failing rows (platform1): no delivery thread posting
        # them while pages are timed.
        delivery_enabled=False,
        # QueueSetup turns the registry cache off for tests; time the pages as deployed.
        registry_cache_sec=Settings.registry_cache_sec,
    )
    if reuse:
        return setup
    reg = setup_registry(setup.db)
    note(f"  filling {rows:,} done jobs...")
    took = fill(setup.db, rows, reg)
    note(f"  filled in {took:.0f} s ({rows / took:,.0f} jobs/s)")
    return setup


def time_sqlite(args: argparse.Namespace) -> dict[str, Timing]:
    reuse = args.admin_reuse_sqlite is not None
    instance = Path(args.admin_reuse_sqlite or tempfile.mkdtemp(prefix="gq-bench-"))
    note(f"SQLite in {instance}")
    try:
        setup = prepare(instance, "", args.admin_rows, reuse)
        try:
            return time_pages(setup.settings, setup.db, args.admin_rows, args.admin_repeat)
        finally:
            setup.close()
    finally:
        if not args.admin_keep and not reuse:
            shutil.rmtree(instance, ignore_errors=True)


def time_mariadb(args: argparse.Namespace) -> dict[str, Timing]:
    from harness.mariadb import create_test_database, drop_test_database

    reuse = args.admin_reuse_mariadb is not None
    if reuse:
        url = args.admin_reuse_mariadb
    else:
        base = mariadb_base()
        if base is None:
            raise Unavailable("no MariaDB")
        # The timings are of this machine: a server across a network would add its own.
        if make_url(base).host not in LOCAL_HOSTS:
            raise Unavailable(f"the MariaDB at {make_url(base).host} is not on this machine")
        url = create_test_database(base)
    if make_url(url).host not in LOCAL_HOSTS:
        raise SystemExit("the MariaDB database must be on this machine")
    instance = Path(tempfile.mkdtemp(prefix="gq-bench-maria-"))
    note(f"MariaDB database {make_url(url).database}")
    try:
        setup = prepare(instance, url, args.admin_rows, reuse)
        try:
            return time_pages(setup.settings, setup.db, args.admin_rows, args.admin_repeat)
        finally:
            setup.close()
    finally:
        shutil.rmtree(instance, ignore_errors=True)
        if args.admin_keep or reuse:
            note(f"kept {url}")
        else:
            drop_test_database(url)


BACKENDS = {"sqlite": time_sqlite, "mariadb": time_mariadb}


def run(args: argparse.Namespace) -> list[list]:
    if not 1 <= args.admin_rows <= 20_000_000 or not 1 <= args.admin_repeat <= 50:
        raise SystemExit("--admin-rows must be 1..20,000,000 and --admin-repeat 1..50")
    results: dict[str, dict[str, Timing]] = {}
    for backend in args.backends:
        try:
            results[backend] = BACKENDS[backend](args)
        except Unavailable as exc:
            note(f"admin pages on {backend}: skipped ({exc})")
    if not results:
        return []
    labels = list(next(iter(results.values())))
    rows = [
        [label]
        + [
            ms
            for b in results
            for ms in (results[b][label].cold * 1000, results[b][label].warm * 1000)
        ]
        for label in labels
    ]
    print_table(
        f"Admin page times with {args.admin_rows:,} done jobs (median ms; cold = caches emptied)",
        ["page", *(f"{b} {kind}" for b in results for kind in ("cold", "warm"))],
        rows,
    )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin-rows", type=int, default=1_000_000, help="done jobs to insert")
    parser.add_argument("--admin-repeat", type=int, default=3, help="views per page (median)")
    parser.add_argument("--admin-keep", action="store_true", help="keep the filled databases")
    parser.add_argument(
        "--admin-reuse-sqlite", metavar="DIR", help="time an instance filled before"
    )
    parser.add_argument(
        "--admin-reuse-mariadb", metavar="URL", help="time a database filled before"
    )
