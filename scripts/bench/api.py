"""JSON API at depth, and event streams on one worker (``scripts/bench/run api``).

Part 1, list and locate at depth: ``jobs`` + ``job_types`` are bulk inserted
(executemany, as claim.py's fill) to each of ``--depths`` jobs, in the mix
a queue that has run for two weeks holds (MIX below): mostly done jobs over
three platforms, and a live tail of queued, sent and held jobs over 4 server
types with priorities 0..4. The first depth's block takes the highest ids,
the next blocks the ids below it, so the live tail stays among the newest
jobs. Then GET requests over real HTTP (gunicorn, examples/gunicorn.conf.py,
one keep-alive connection, one request at a time) with an operator's API
token and with the platform's RS512 bearer (a fresh, pre-signed JWS per
request). The reference of each figure is the same request at the first
depth. A request whose p50 misses the target at the last depth is run again
in-process and its slowest statement EXPLAINed.

Part 2, event streams: at the last depth, one gunicorn worker (1 x 256
threads, events_max_streams 220) idle, with 1 stream, with N/10 streams on
N/10 queued jobs, N streams on the same N/10 jobs and N streams on N jobs,
each held ``--api-hold`` seconds. Counted: the worker's CPU (/proc), the statements it sends (a
gunicorn post_worker_init hook in a config file made here, which loads
examples/gunicorn.conf.py and counts in the worker with a SQLAlchemy event,
with JobWatch's rounds), MariaDB's global Com_select, and what the clients
received. Streams are raw sockets on one selector loop, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import selectors
import shutil
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from harness.processes import Gunicorn

from .common import (
    MP,
    ROOT,
    Unavailable,
    children_of,
    cpu_seconds,
    database,
    make_queue,
    note,
    pct,
    print_table,
    ratio,
    tmpdir,
)

TARGET_MS = 20.0  # the target: list and position p50 at the last depth
TYPES, SERVERS, SPAN_SEC, BATCH, WARM, MIN_TIMED = 4, 8, 14 * 86400, 10_000, 5, 10
LIVE = ("queued", "sent", "held")
# Shares of the jobs; the rest are done. Live jobs are the newest of a block.
MIX = {"queued": 0.02, "sent": 0.0003, "held": 0.0002, "error": 0.002, "cancelled": 0.001}
STATES = {"done": "FINISHED", "error": "FAILED", "cancelled": "CANCELLED", "queued": "QUEUED",
          "sent": "STARTED", "held": "HELD"}  # fmt: skip
JOB_COLUMNS = [
    "id", "platform_id", "received_via", "name", "jobusertaskid", "dedup_key", "job_repeats",
    "status", "priority", "timeout_sec", "nb_fails", "received_time", "sent_to",
    "grading_start_time", "lease_expires", "grading_end_time", "tags", "taskrevision", "jobdata",
]  # fmt: skip
JOBDATA = json.dumps({"taskPath": "$ROOT_PATH/tasks/contest3/task042", "solution": "x" * 40})


@dataclass
class Reg:
    platforms: list[int]  # [0] is the platform whose bearer the bench signs
    types: list[int]
    servers: list[int]
    operator: str  # an operator API token, scope read


def prepare(bench: Any) -> Reg:
    from graderqueue.identity import api_callers
    from graderqueue.registry import actions as registry

    others = [bench.setup.platform(f"platform{i}").id for i in (2, 3)]
    with bench.setup.db.transaction() as session:
        types = [registry.add_type(session, f"api{i}", ["c"]).id for i in range(TYPES)]
        servers = [
            registry.add_server(session, f"grader{i}", f"api{i % TYPES}",
                                ssl_serial=f"{i + 1:x}", ssl_dn="CN=bench").id
            for i in range(SERVERS)
        ]  # fmt: skip
        token = api_callers.add_token(session, "bench", "read")
    return Reg([bench.platform.id, *others], types, servers, token)


# -- the fill ---------------------------------------------------------------------


def _ts(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def statuses(count: int, rng: random.Random) -> list[str]:
    """A block's statuses, oldest first: history (done, some failed or cancelled), then live."""
    live = [s for s in LIVE for _ in range(max(1, round(count * MIX[s])))]
    rng.shuffle(live)
    cut_error, cut_cancel = MIX["error"], MIX["error"] + MIX["cancelled"]
    history = []
    for _ in range(count - len(live)):
        r = rng.random()
        history.append("error" if r < cut_error else "cancelled" if r < cut_cancel else "done")
    return history + live


def _rows(ids: range, block: list[str], reg: Reg, rng: random.Random, top: int) -> tuple:
    now = time.time()
    jobs, types = [], []
    for i, status in zip(ids, block, strict=True):
        priority = rng.randrange(5)
        if status in LIVE:
            received = now - rng.uniform(1, 3600)
        else:  # the history spreads over two weeks, in id order
            received = now - 60 - SPAN_SEC * (1 - i / top)
        server = start = end = None
        if status in ("sent", "done", "error"):
            server, start = rng.choice(reg.servers), received + rng.uniform(0.005, 4)
        if status in ("done", "error"):
            end = start + rng.uniform(0.2, 9)
        uid = f"uid-{i}"
        jobs.append((
            i, reg.platforms[i % len(reg.platforms)], "", f"sub-{i}", uid,
            uid if status in LIVE else None, 0, status, priority, 300,
            3 if status == "error" else 0, _ts(received), server, _ts(start),
            _ts(now + 300) if status == "sent" else None, _ts(end), "c", "r1", JOBDATA,
        ))  # fmt: skip
        first = rng.randrange(TYPES)
        types.append((i, reg.types[first], status, priority))
        if rng.random() < 0.1:  # one job in ten may run on two types
            types.append((i, reg.types[(first + 1) % TYPES], status, priority))
    return jobs, types


def fill(db: Any, first_id: int, count: int, reg: Reg, rng: random.Random, top: int) -> float:
    """Insert jobs first_id..first_id+count-1 in the MIX; returns the seconds it took."""
    began = time.monotonic()
    sqlite = db.dialect == "sqlite"
    mark = "?" if sqlite else "%s"
    block = statuses(count, rng)
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if not sqlite:  # this session only: the rows are known to be consistent
            cur.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
        job_sql = f"INSERT INTO jobs ({','.join(JOB_COLUMNS)}) VALUES ({','.join([mark] * 19)})"
        type_sql = f"INSERT INTO job_types (job_id, type_id, status, priority) VALUES ({mark},{mark},{mark},{mark})"  # noqa: E501
        for start in range(0, count, BATCH):
            ids = range(first_id + start, first_id + min(start + BATCH, count))
            jobs, types = _rows(ids, block[start : start + BATCH], reg, rng, top)
            if sqlite:
                cur.execute("BEGIN")
            cur.executemany(job_sql, jobs)
            cur.executemany(type_sql, types)
            raw.commit()
        if not sqlite:  # as claim.py: InnoDB's statistics made current after a bulk load
            cur.execute("ANALYZE TABLE jobs, job_types")
            cur.fetchall()
        cur.close()
    finally:
        raw.close()
    return time.monotonic() - began


def census(db: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from graderqueue.store.models import Job, JobType

    with db.reading() as session:
        out = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        out["job_types"] = session.scalar(select(func.count()).select_from(JobType))
    return out


# -- part 1: requests at depth -------------------------------------------------------


@dataclass
class Kind:
    label: str
    paths: list[str]


def queue_orders(db: Any, platform_id: int | None) -> list[list[int]]:
    """Each type's queued jobs in the order they are handed out (priority, then id)."""
    from sqlalchemy import select

    from graderqueue.store.models import Job, JobType

    query = select(JobType.type_id, JobType.job_id).where(JobType.status == "queued")
    if platform_id is not None:
        query = query.join(Job, Job.id == JobType.job_id).where(Job.platform_id == platform_id)
    orders: dict[int, list[int]] = defaultdict(list)
    with db.reading() as session:
        for type_id, job_id in session.execute(
            query.order_by(JobType.type_id, JobType.priority.desc(), JobType.job_id)
        ):
            orders[type_id].append(job_id)
    return [o for o in orders.values() if o]


def kinds(
    db: Any, reg: Reg, rng: random.Random, n: int, span: tuple[int, int], own: bool
) -> list[Kind]:
    """The requests to time, ``n + WARM`` paths each; ``own``: the platform's jobs only."""
    lo, hi = span
    orders = queue_orders(db, reg.platforms[0] if own else None)
    queued = sorted({j for o in orders for j in o})

    def mine(i: int) -> int:  # platform[0]'s jobs are those with id % 3 == 0
        return i if not own else (i - i % 3 if i - i % 3 >= lo else i - i % 3 + 3)

    def at(lo_frac: float, hi_frac: float) -> int:
        order = rng.choice(orders)
        return order[min(len(order) - 1, int(rng.uniform(lo_frac, hi_frac) * len(order)))]

    def each(make: Any) -> list[str]:
        return [make() for _ in range(n + WARM)]

    jobs = "/api/v1/jobs"
    return [
        Kind("list, no filter", each(lambda: jobs)),
        Kind("list ?state=QUEUED", each(lambda: f"{jobs}?state=QUEUED")),
        Kind("list ?state=FINISHED", each(lambda: f"{jobs}?state=FINISHED")),
        Kind("list ?state=FAILED", each(lambda: f"{jobs}?state=FAILED")),
        Kind("list ?name= (one job)", each(lambda: f"{jobs}?name=sub-{mine(rng.randint(lo, hi))}")),
        Kind("list, page from a cursor in the older half",
             each(lambda: f"{jobs}?cursor={rng.randint(lo, (lo + hi) // 2)}")),
        Kind("list ?state=FINISHED, page from a cursor in the older half",
             each(lambda: f"{jobs}?state=FINISHED&cursor={rng.randint(lo, (lo + hi) // 2)}")),
        Kind("job detail (queued job)", each(lambda: f"{jobs}/{rng.choice(queued)}")),
        Kind("position, front of a queue", each(lambda: f"{jobs}/{at(0, 0.05)}/position")),
        Kind("position, middle", each(lambda: f"{jobs}/{at(0.45, 0.55)}/position")),
        Kind("position, back", each(lambda: f"{jobs}/{at(0.95, 1.0)}/position")),
    ]  # fmt: skip


def _sign(name: str, pem: str, audience: str, count: int) -> list[str]:
    from jwcrypto import jwk, jws

    key, now = jwk.JWK.from_pem(pem.encode()), int(time.time())
    header = json.dumps({"alg": "RS512", "kid": name})
    out = []
    for _ in range(count):
        claims = {"iss": name, "aud": audience, "iat": now, "exp": now + 300,
                  "jti": uuid.uuid4().hex}  # fmt: skip
        token = jws.JWS(json.dumps(claims).encode())
        token.add_signature(key, None, protected=header)
        out.append(token.serialize(compact=True))
    return out


def sign_bearers(bench: Any, count: int) -> list[str]:
    """Platform bearers, one per request, valid 300 s: signed in 2 helper processes."""
    spec = (bench.platform.name, bench.platform.private_pem, bench.key_name)
    with MP.Pool(2) as pool:
        parts = pool.starmap(_sign, [(*spec, count // 2), (*spec, count - count // 2)])
    return parts[0] + parts[1]


def time_gets(
    port: int, paths: list[str], bearers: list[str] | None, budget: float
) -> list[tuple[float, str]]:
    """GET each path on one keep-alive connection; (ms, path) of the timed ones (after WARM).

    Stops after ``budget`` seconds once MIN_TIMED are timed: a slow kind costs seconds, not
    minutes (fewer samples: its p99 is then near its maximum).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out: list[tuple[float, str]] = []
    stop = time.monotonic() + budget
    try:
        for n, path in enumerate(paths):
            if len(out) >= MIN_TIMED and time.monotonic() > stop:
                break
            headers = {"Authorization": f"Bearer {bearers[n]}"} if bearers else {}
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
            elapsed = (time.perf_counter() - t0) * 1000
            if answer.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {answer.status} {body[:300]!r}")
            if n >= WARM:
                out.append((elapsed, path))
    finally:
        conn.close()
    return out


def summary(timed: list[tuple[float, str]]) -> tuple[float, float, str]:
    """p50, p99, and the path of the request that took the p50: the one to EXPLAIN (a plan
    can change with the parameters, as MariaDB's does with the cursor)."""
    ms = [t for t, _path in timed]
    p50 = pct(ms, 50)
    return p50, pct(ms, 99), next(path for t, path in timed if t == p50)


def measure_depth(bench: Any, reg: Reg, port: int, args: Any, span: tuple[int, int]) -> dict:
    """{(label, auth): (p50, p99, the p50's path, requests timed)} at the current depth."""
    rng = random.Random(span[0])
    out: dict[tuple[str, str], tuple[float, float, str, int]] = {}
    floor = time_gets(port, ["/healthz"] * (args.api_requests + WARM), None, args.api_kind_sec)
    floor_label = "GET /healthz (no auth, no database: the floor)"
    out[(floor_label, "-")] = (*summary(floor)[:2], "", len(floor))
    for auth in ("operator", "platform"):
        plan = kinds(bench.setup.db, reg, rng, args.api_requests, span, auth == "platform")
        if auth == "platform":
            bearers = iter(sign_bearers(bench, len(plan) * (args.api_requests + WARM)))
        for kind in plan:
            tokens = [reg.operator if auth == "operator" else next(bearers) for _ in kind.paths]
            got = time_gets(port, kind.paths, tokens, args.api_kind_sec)
            out[(kind.label, auth)] = (*summary(got), len(got))
    return out


# -- the plan of a slow request ---------------------------------------------------------


def _in_process(session: Any, path: str, platform_id: int | None) -> None:
    """What the request's handler asks of the queue, with the same arguments."""
    from graderqueue.queue import job_view, listing, position

    parts = urlsplit(path)
    segments = parts.path.split("/")  # '', api, v1, jobs[, id[, position]]
    if len(segments) == 4:
        args = dict(parse_qsl(parts.query))
        cursor = listing.parse_cursor(args.pop("cursor", None))
        jobs = listing.JobFilter.parse(args, platform_id=platform_id)
        listing.page(session, jobs, limit=50, cursor=cursor)
    elif segments[-1] == "position":
        job_view.state(session, int(segments[4]), platform_id)
        position.of_job(session, int(segments[4]))
    else:
        job_view.detail(session, int(segments[4]), platform_id)


def slowest_statement(db: Any, path: str, platform_id: int | None) -> tuple[float, str, Any]:
    from sqlalchemy import event

    seen: list[tuple[float, str, Any]] = []

    def before(conn, cursor, statement, parameters, context, many):  # type: ignore[no-untyped-def]
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, many):  # type: ignore[no-untyped-def]
        seen.append((time.perf_counter() - conn.info.pop("bench_t0"), statement, parameters))

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    try:
        with db.reading() as session:
            _in_process(session, path, platform_id)
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
        event.remove(db.engine, "after_cursor_execute", after)
    return max(seen, key=lambda s: s[0])


def explain(db: Any, statement: str, parameters: Any) -> str:
    """SQLite's EXPLAIN QUERY PLAN or MariaDB's EXPLAIN, on one line."""
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if db.dialect == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            return "; ".join(row[3] for row in cur.fetchall())
        cur.execute("EXPLAIN " + statement, parameters)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return "; ".join(
            f"{r['table']}: {r['type']} key={r['key']} rows~{r['rows']} {r['Extra'] or ''}".strip()
            for r in rows
        )
    finally:
        raw.close()


def slow_rows(bench: Any, reg: Reg, backend: str, got: dict) -> list[list]:
    rows = []
    for (label, auth), (p50, _p99, path, _n) in got.items():
        if p50 < TARGET_MS or not path:
            continue
        platform_id = reg.platforms[0] if auth == "platform" else None
        took, statement, parameters = slowest_statement(bench.setup.db, path, platform_id)
        plan = explain(bench.setup.db, statement, parameters)
        # The summary's 14 columns say nothing about the plan: shortened.
        flat = re.sub(r"^SELECT jobs\.id, jobs\.status, .*? FROM ", "SELECT <summary> FROM ",
                      " ".join(statement.split()))  # fmt: skip
        rows.append([backend, label, auth, p50, took * 1000, flat[:240], plan])
        note(f"  slow: {backend} {label} ({auth}) {took * 1000:.1f} ms: {flat}\n    plan: {plan}")
    return rows


# -- part 2: event streams ----------------------------------------------------------------

HOOK = '''
import json as _json, os as _os, threading as _threading, time as _time
exec(compile(open({example!r}).read(), {example!r}, "exec"))


def post_worker_init(worker):
    """The benchmark's counters: statements this worker sends, JobWatch rounds, streams."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    lock, counts = _threading.Lock(), {{"select": 0, "other": 0}}

    def count(conn, cursor, statement, parameters, context, executemany):
        kind = "select" if statement.lstrip()[:6].upper() == "SELECT" else "other"
        with lock:
            counts[kind] += 1

    event.listen(Engine, "before_cursor_execute", count)
    watch = worker.wsgi.extensions["graderqueue"].job_watch
    read, spent = watch._read, [0.0]

    def timed_read(ids):  # how long each round's database reads take
        began = _time.perf_counter()
        try:
            return read(ids)
        finally:
            spent[0] += _time.perf_counter() - began

    watch._read = timed_read
    path = _os.path.join({outdir!r}, "worker-%d.json" % _os.getpid())

    def dump():
        while True:
            with lock:
                state = dict(counts, at=_time.monotonic())
            with watch._changed:
                state.update(rounds=watch.reads, streams=sum(watch._watched.values()),
                             read_sec=spent[0])
            with open(path + ".tmp", "w") as out:
                _json.dump(state, out)
            _os.replace(path + ".tmp", path)
            _time.sleep(0.1)

    _threading.Thread(target=dump, name="bench-counters", daemon=True).start()
'''


@dataclass
class Stream:
    buffer: bytes = b""
    status: int = 0
    events: int = 0
    keepalives: int = 0
    closed: bool = False

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if not self.status:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self.status, self.buffer = int(head.split(b" ", 2)[1]), rest
        *pieces, self.buffer = self.buffer.split(b"\n\n")
        for piece in pieces:
            self.events += b"event: status_update" in piece
            self.keepalives += b": keepalive" in piece


@dataclass
class StreamClients:
    """GET .../events on raw sockets, all read by one selector loop."""

    port: int
    token: str
    job_ids: list[int]
    sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    streams: list[Stream] = field(default_factory=list)

    def open(self) -> None:
        for job_id in self.job_ids:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            sock.sendall(
                f"GET /api/v1/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            sock.setblocking(False)
            self.streams.append(Stream())
            self.sel.register(sock, selectors.EVENT_READ, self.streams[-1])

    def pump(self, seconds: float, until: Any = None) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if until is not None and until():
                return True
            for key, _mask in self.sel.select(min(left, 0.2)):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if not data:
                    key.data.closed = True
                    self.sel.unregister(key.fileobj)
                    continue
                key.data.feed(data)
        return until is None or until()

    def started(self) -> bool:
        failed = [s.status for s in self.streams if s.status and s.status != 200]
        if failed or any(s.closed for s in self.streams):
            raise RuntimeError(f"event streams refused or closed: {failed[:5]}")
        return all(s.events for s in self.streams)

    def totals(self) -> tuple[int, int]:
        return sum(s.events for s in self.streams), sum(s.keepalives for s in self.streams)

    def close(self) -> None:
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()


def counters(outdir: Path, pid: int) -> dict[str, Any]:
    path = outdir / f"worker-{pid}.json"
    for _ in range(100):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"the worker's counters never appeared in {path}")


def com_select(db: Any) -> int | None:
    """MariaDB's Com_select: global, so it counts every client of the server."""
    if db.dialect == "sqlite":
        return None
    from sqlalchemy import text

    with db.engine.connect() as conn:
        return int(conn.execute(text("SHOW GLOBAL STATUS LIKE 'Com_select'")).one()[1])


def mariadb_pids() -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() in ("mariadbd", "mysqld"):
                    out.append(int(proc.name))
            except OSError:
                continue
    return out


def snapshot(outdir: Path, pid: int, db: Any, clients: StreamClients | None) -> dict[str, Any]:
    got = counters(outdir, pid)
    events, keepalives = clients.totals() if clients else (0, 0)
    return {
        **got, "t": time.monotonic(), "cpu": cpu_seconds([pid], with_children=False),
        "com": com_select(db), "mariadb": cpu_seconds(mariadb_pids(), with_children=False),
        "events": events, "keepalives": keepalives,
    }  # fmt: skip


def scenario(
    port: int, pid: int, outdir: Path, db: Any, token: str, jobs: list[int], hold: float
) -> dict[str, float]:
    """Open one stream per entry of ``jobs``, hold them ``hold`` s; per-second rates."""
    clients = StreamClients(port, token, jobs) if jobs else None
    began = time.monotonic()
    if clients is not None:
        clients.open()
        if not clients.pump(60, clients.started):
            raise RuntimeError("the event streams did not all start within 60 s")
    opened = time.monotonic()
    wait = clients.pump if clients is not None else time.sleep
    wait(2)  # past the first events of every stream
    a = snapshot(outdir, pid, db, clients)
    wait(hold)
    b = snapshot(outdir, pid, db, clients)
    if clients is not None:
        clients.close()
    closed = time.monotonic()
    while counters(outdir, pid)["streams"] and time.monotonic() < closed + 40:
        time.sleep(0.2)  # the worker lets a stream go when it next writes to it
    note(f"  {len(jobs)} streams: {opened - began:.1f} s to open and get their first events, "
         f"{time.monotonic() - closed:.1f} s for the worker to let them go")  # fmt: skip
    sec, at, rounds = b["t"] - a["t"], b["at"] - a["at"], b["rounds"] - a["rounds"]
    mariadb = a["com"] is not None
    return {
        "cpu": (b["cpu"] - a["cpu"]) / sec * 100,
        "select": (b["select"] - a["select"]) / at,
        "all": (b["select"] + b["other"] - a["select"] - a["other"]) / at,
        "rounds": (b["rounds"] - a["rounds"]) / at,
        "round_ms": (b["read_sec"] - a["read_sec"]) / rounds * 1000 if rounds else float("nan"),
        "com": (b["com"] - a["com"]) / sec if mariadb else float("nan"),
        "mariadb": (b["mariadb"] - a["mariadb"]) / sec * 100 if mariadb else float("nan"),
        "events": (b["events"] - a["events"]) / sec,
        "keepalives": (b["keepalives"] - a["keepalives"]) / sec,
    }


def stream_part(bench: Any, reg: Reg, args: Any, backend: str, workdir: Path) -> list[list]:
    outdir = workdir / "counters"
    outdir.mkdir()
    conf = workdir / "gunicorn-api-bench.conf.py"
    example = str(ROOT / "examples" / "gunicorn.conf.py")
    conf.write_text(HOOK.format(example=example, outdir=str(outdir)))
    env = {**bench.setup.env, "PYTHONPATH": str(ROOT), "GRADERQUEUE_EVENTS_MAX_STREAMS": "220",
           "GRADERQUEUE_EVENTS_MAX_SEC": "86400"}  # fmt: skip
    server = Gunicorn(
        "graderqueue.wsgi:app", env=env, workers=1, threads=256, ready_path="/healthz",
        cwd=str(ROOT), extra_args=["-c", str(conf)],
    )  # fmt: skip
    server.start()
    db, n, rows = bench.setup.db, args.api_streams, []
    try:
        (pid,) = children_of(server.pid)  # type: ignore[arg-type]
        queued = sorted({j for o in queue_orders(db, None) for j in o})
        rng = random.Random(5)
        few = rng.sample(queued, max(1, n // 10))
        plans = [
            ("idle worker (reference)", []),
            ("1 stream (reference)", rng.sample(queued, 1)),
            (f"{len(few)} streams, {len(few)} jobs", few),
            (f"{n} streams on the same {len(few)} jobs", [few[i % len(few)] for i in range(n)]),
            (f"{n} streams, {n} jobs", rng.sample(queued, n)),
        ]
        ref: dict[str, float] = {}
        for label, jobs in plans:
            r = scenario(server.port, pid, outdir, db, reg.operator, jobs, args.api_hold)  # type: ignore[arg-type]
            ref = ref or (r if jobs else {})
            rows.append([
                backend, label, len(jobs), len(set(jobs)), r["cpu"], r["select"], r["all"],
                r["rounds"], r["select"] / r["rounds"] if r["rounds"] else float("nan"),
                r["round_ms"], r["com"], r["mariadb"], r["keepalives"],
                ratio(r["select"], ref.get("select", 0.0)),
            ])  # fmt: skip
            note(f"  {backend} {label}: {r}")
    finally:
        server.stop()
    return rows


# -- the run --------------------------------------------------------------------------------


@dataclass
class Results:
    fills: list[list] = field(default_factory=list)
    times: dict[tuple[str, str, str], dict[int, tuple]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    slow: list[list] = field(default_factory=list)
    streams: list[list] = field(default_factory=list)


def one_backend(args: Any, backend: str, workdir: Path, url: str, out: Results) -> None:
    bench = make_queue(workdir, url)
    db = bench.setup.db
    try:
        reg = prepare(bench)
        server = bench.setup.gunicorn(1 if backend == "sqlite" else 2, 16)
        top, filled, rng = args.depths[-1], 0, random.Random(11)
        got: dict = {}
        for depth in args.depths:
            took = fill(db, top - depth + 1, depth - filled, reg, rng, top)
            filled = depth
            c = census(db)
            out.fills.append([backend, depth, *(c.get(s, 0) for s in STATES), c["job_types"], took])
            note(f"  {backend}: filled to {depth:,} jobs in {took:.0f} s: {c}")
            got = measure_depth(bench, reg, server.port, args, (top - depth + 1, top))  # type: ignore[arg-type]
            for (label, auth), value in got.items():
                out.times[(backend, label, auth)][depth] = value
            note(f"  {backend} @ {depth:,}: timed {len(got)} requests kinds")
        out.slow += slow_rows(bench, reg, backend, got)
        server.stop()
        out.streams += stream_part(bench, reg, args, backend, workdir)
    finally:
        bench.setup.close()


def print_tables(args: Any, out: Results) -> None:
    first, last = args.depths[0], args.depths[-1]
    print_table(
        "Fills: jobs by state (MIX; 3 platforms, 4 server types, priorities 0..4)",
        ["backend", "jobs", *(f"{s} ({STATES[s]})" for s in STATES), "job_types rows", "fill s"],
        out.fills,
    )
    rows = []
    for (backend, label, auth), by_depth in out.times.items():
        cells = [c for d in args.depths for c in by_depth.get(d, (float("nan"),) * 2)[:2]]
        p50 = by_depth.get(last, (float("nan"),))[0]
        target = label.startswith(("list", "position"))  # the target is theirs
        verdict = ("PASS" if p50 < TARGET_MS else "MISS") if target else "-"
        timed = by_depth.get(last, (0, 0, "", 0))[3]
        rows.append([backend, label, auth, *cells, timed,
                     ratio(p50, by_depth.get(first, (0.0,))[0]), verdict])  # fmt: skip
    print_table(
        f"JSON API over HTTP, one request at a time (target: list and position p50 < "
        f"{TARGET_MS:.0f} ms at {last:,} jobs; reference: {first:,} jobs)",
        ["backend", "request", "auth",
         *(h for d in args.depths for h in (f"{d:,} p50 ms", "p99 ms")),
         f"timed at {last:,}", f"{last:,} / {first:,} p50", "target"],
        rows,
    )  # fmt: skip
    if out.slow:
        print_table(
            f"Requests over the target at {last:,} jobs: the slowest statement (in-process) "
            "and its plan",
            ["backend", "request", "auth", "HTTP p50 ms", "statement ms", "statement", "plan"],
            out.slow,
        )
    print_table(
        f"Event streams on one worker (1 x 256 threads), {last:,} jobs, held {args.api_hold:.0f} s",
        ["backend", "scenario", "streams", "jobs", "worker CPU %", "SELECT/s", "statements/s",
         "JobWatch rounds/s", "SELECT per round", "ms per round", "Com_select/s (global)",
         "MariaDB CPU %", "keepalives/s recv", "SELECT/s vs 1 stream"],
        out.streams,
    )  # fmt: skip


def run(args: argparse.Namespace) -> list[list]:
    if not args.depths or not all(1 <= d <= 5_000_000 for d in args.depths):
        raise SystemExit("--depths are 1..5,000,000")
    if not 10 <= args.api_streams <= 220:
        raise SystemExit("--api-streams is 10..220 (the worker's events_max_streams)")
    if not 1 <= args.api_requests <= 2000 or not 1 <= args.api_hold <= 300:
        raise SystemExit("--api-requests is 1..2000 and --api-hold 1..300 s")
    note(
        "  mix: " + ", ".join(f"{s} {share:.2%}" for s, share in MIX.items()) + ", the rest "
        "done; live jobs (queued, sent, held) are the newest of each block; job id mod 3 "
        "gives the platform; no results, events or handouts rows"
    )
    out = Results()
    for backend in args.backends:
        workdir = tmpdir(f"api-{backend}")
        try:
            with database(backend, workdir) as url:
                one_backend(args, backend, workdir, url, out)
        except Unavailable as exc:
            note(f"api on {backend}: skipped ({exc})")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print_tables(args, out)
    return out.fills


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--depths",
        type=lambda text: sorted({int(x) for x in text.split(",") if x}),
        default=[1000, 1_000_000],
        help="api: jobs in the database, comma-separated (the first is the reference)",
    )
    parser.add_argument("--api-requests", type=int, default=100, help="api: timed GETs per kind")
    parser.add_argument(
        "--api-kind-sec", type=float, default=5.0, help="api: at most this long per kind"
    )
    parser.add_argument("--api-streams", type=int, default=200, help="api: open event streams")
    parser.add_argument("--api-hold", type=float, default=20.0, help="api: seconds to hold streams")
