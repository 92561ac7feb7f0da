"""``graderqueue-client``: the JSON API v1 from a shell (docs/CLIENT.md).

Where the queue is and who calls come from options or the environment
(options win): ``--url`` / ``GRADERQUEUE_URL``; an operator's ``--token`` /
``GRADERQUEUE_API_TOKEN``, or a platform's ``--platform NAME --key FILE.pem``
/ ``GRADERQUEUE_PLATFORM`` and ``GRADERQUEUE_KEY``. A refusal prints the
queue's problem (title and detail) to stderr and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import requests

from graderqueue.apiclient import (
    FILTERS,
    ApiClient,
    ApiError,
    BearerSource,
    OperatorToken,
    PlatformSigner,
    format_time,
)
from graderqueue.errors import QueueError

PROG = "graderqueue-client"
TERMINAL = {"FINISHED": 0, "FAILED": 1, "CANCELLED": 1}  # watch's exit status
PAGE = 100  # jobs per request when listing
RECONNECT_TRIES = 8  # failed reconnections in a row before watch gives up
Command = Callable[[ApiClient, argparse.Namespace], int | None]


class UsageError(QueueError):
    """A command line the client cannot use (an unreadable file, bad JSON)."""


# -- output helpers
def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    cells = [list(headers), *([_text(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _as_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=_plain)


def _plain(value: Any) -> Any:
    """The typed answers as JSON again (times as the API writes them)."""
    if isinstance(value, datetime):
        return format_time(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


# -- commands
def _jobdata(text: str) -> Any:
    """--jobdata: JSON, or @FILE with the JSON (@- reads stdin)."""
    if text.startswith("@"):
        try:
            text = sys.stdin.read() if text == "@-" else Path(text[1:]).read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {text[1:]}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--jobdata is not JSON: {exc}") from exc


def cmd_submit(api: ApiClient, args: argparse.Namespace) -> None:
    fields = {
        "jobname": args.name,
        "tags": args.tags,
        "priority": args.priority,
        "jobusertaskid": args.jobusertaskid,
        "taskrevision": args.taskrevision,
        "timeout": args.timeout,
    }
    print(api.submit(_jobdata(args.jobdata), idempotency_key=args.idempotency_key, **fields))


def cmd_list(api: ApiClient, args: argparse.Namespace) -> None:
    filters = {key: getattr(args, key) for key in FILTERS}
    jobs = list(islice(api.iter_jobs(limit=min(args.limit, PAGE), **filters), args.limit))
    if args.json:
        print(_as_json(jobs))
        return
    keys = ("id", "state", "priority", "platform", "tags", "name", "jobusertaskid", "received_at")
    rows = [[getattr(job, key) for key in keys] for job in jobs]
    headers = ("ID", "STATE", "PRIO", "PLATFORM", "TAGS", "NAME", "USERTASKID", "RECEIVED")
    _table(headers, rows, sys.stdout)


def cmd_status(api: ApiClient, args: argparse.Namespace) -> None:
    job = api.job(args.id)
    if args.json:
        print(_as_json(job))
        return
    line = f"job {job.id}: {job.state}"
    if job.state == "QUEUED":
        where = api.position(job.id)
        line += f", position {_text(where.position)}"
        if where.eta_sec is not None:
            line += f" (about {where.eta_sec:.0f} s)"
    print(line)
    for key in ("name", "jobusertaskid", "platform", "tags", "priority", "failures", "server"):
        print(f"  {key}: {_text(getattr(job, key))}")
    print("timeline:")
    for entry in job.timeline:
        extra = " ".join(_text(v) for v in (entry.server, entry.detail) if v is not None)
        print(f"  {_text(entry.at)}  {entry.event}  {extra}".rstrip())
    if job.artifacts:
        sizes = [f"{a.name} ({a.size} B{', cut' if a.truncated else ''})" for a in job.artifacts]
        print("artifacts: " + ", ".join(sizes))


class _Shown:
    """watch's output: one line rewritten in place on a terminal, else a line per change."""

    def __init__(self, job_id: int, out: TextIO) -> None:
        self.job_id, self.out, self.tty = job_id, out, out.isatty()
        self.state: str | None = None
        self.position: Any = None
        self.pending = False
        self.last = ""

    def update(self, kind: str, data: Any) -> None:
        if kind == "state":
            self.state, self.position = str(data), None
            # A waiting job's position comes right after its state: one line for both.
            self.pending = self.state == "QUEUED"
            if self.pending:
                return
        elif kind == "position":
            self.position = data
        self.show()

    def show(self) -> None:
        self.pending = False
        line = f"job {self.job_id}: {self.state or '?'}"
        if self.position is not None:
            line += f", position {self.position}"
        if line != self.last:
            self.last = line
            self.out.write(f"\r\x1b[K{line}" if self.tty else f"{line}\n")
            self.out.flush()


def cmd_watch(api: ApiClient, args: argparse.Namespace) -> int:
    """Follows the job's streams, resuming each from its last event, until a terminal state."""
    shown = _Shown(args.id, sys.stdout)
    last_id: str | None = None
    failures = 0
    try:
        while True:
            told = 0
            try:
                for event in api.events(args.id, last_event_id=last_id):
                    last_id, told, failures = event.id or last_id, told + 1, 0
                    shown.update(event.type, event.data)
                    if event.type == "state" and event.data in TERMINAL:
                        return TERMINAL[event.data]
            except ApiError as exc:
                if exc.status != 503:
                    raise
                failures += 1
                error: Exception = exc
            except requests.RequestException as exc:  # dropped, timed out, refused
                failures += 1
                error = exc
            if shown.pending:
                shown.show()
            if failures > RECONNECT_TRIES:
                raise error
            # A stream the queue ended (they are time-limited) resumes at once.
            time.sleep(min(2.0 ** (failures - 1), 15.0) if failures else 0 if told else 1)
    finally:
        if shown.tty and shown.last:
            print(file=shown.out)


def _act_one(action: str) -> Command:
    def run(api: ApiClient, args: argparse.Namespace) -> None:
        done = api.act_on(args.id, action, getattr(args, "priority", None))
        print(f"job {done.id}: {done.state}")

    return run


def cmd_act(api: ApiClient, args: argparse.Namespace) -> None:
    filters: dict[str, str] = {}
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTERS:
            raise UsageError(f"--filter {item!r}: KEY=VALUE with KEY one of {', '.join(FILTERS)}")
        filters[key] = value
    outcome = api.act(args.action, filters, priority=args.priority, dry_run=args.dry_run)
    if outcome.dry_run:
        print(f"{outcome.action}: {outcome.matched} job(s) would change (dry run)")
    else:
        print(f"{outcome.action}: {outcome.matched} matched, {outcome.changed} changed")


def cmd_artifact(api: ApiClient, args: argparse.Namespace) -> None:
    content = api.artifact(args.id, args.name)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    with open(args.output, "wb") as fh:
        fh.write(content)


def cmd_queue(api: ApiClient, args: argparse.Namespace) -> None:
    summary = api.queue()
    if args.json:
        print(_as_json(summary))
        return
    oldest = summary.oldest_waiting_sec
    print(f"waiting: {summary.waiting}" + (f", oldest {oldest:.0f} s" if oldest else ""))
    for key in ("type", "tag", "platform"):
        rows = getattr(summary, f"by_{key}")
        if rows:
            print(f"by {key}: " + ", ".join(f"{r.get(key) or '-'} {r['waiting']}" for r in rows))
    speed = summary.throughput
    print(f"finished in the last {speed['window_sec']} s: {speed['finished']}", end="")
    print(f" ({speed['per_minute']:.1f} per minute)")


def cmd_servers(api: ApiClient, args: argparse.Namespace) -> None:
    servers = api.servers()
    if args.json:
        print(_as_json(servers))
        return
    keys = ("name", "type", "alive", "busy", "jobs_held", "max_jobs", "jobs_done", "last_poll")
    rows = [[getattr(s, key) for key in keys] for s in servers]
    _table(("NAME", "TYPE", "ALIVE", "BUSY", "HELD", "MAX", "DONE", "LAST POLL"), rows, sys.stdout)


# -- the command line
def _auth(args: argparse.Namespace) -> BearerSource:
    """Options before the environment; an operator's token before a platform's key."""
    env = os.environ
    token = args.token
    platform = args.platform
    if token is None and platform is None:
        token = env.get("GRADERQUEUE_API_TOKEN") or None
        platform = None if token else env.get("GRADERQUEUE_PLATFORM") or None
    if token:
        return OperatorToken(token)
    if not platform:
        raise UsageError("who calls? --token or --platform NAME --key FILE (or their variables)")
    key = args.key or env.get("GRADERQUEUE_KEY")
    if not key:
        raise UsageError("--platform needs --key FILE.pem (or GRADERQUEUE_KEY)")
    try:
        with open(key, "rb") as fh:
            pem = fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read the key {key}: {exc.strerror}") from exc
    audience = args.audience or env.get("GRADERQUEUE_AUDIENCE") or "graderqueue"
    try:
        return PlatformSigner(platform, pem, audience)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{key} is not a PEM private key: {exc}") from exc


def _global_options(parser: argparse.ArgumentParser) -> None:
    url = os.environ.get("GRADERQUEUE_URL")
    parser.add_argument("--url", default=url, help="the queue's address (GRADERQUEUE_URL)")
    parser.add_argument("--token", help="an operator's API token (GRADERQUEUE_API_TOKEN)")
    parser.add_argument("--platform", help="a platform's name (GRADERQUEUE_PLATFORM)")
    parser.add_argument("--key", help="the platform's private key, PEM (GRADERQUEUE_KEY)")
    parser.add_argument("--audience", help="the queue's key name (default graderqueue)")


def _job_commands(sub: Any) -> None:
    p = sub.add_parser("submit", help="queue a job; prints its id")
    p.add_argument("--jobdata", required=True, help="the job's JSON, or @FILE (@- for stdin)")
    p.add_argument("--tags", help="comma-separated tags")
    p.add_argument("--priority", type=int)
    p.add_argument("--name", help="the job's name (jobname)")
    p.add_argument("--jobusertaskid")
    p.add_argument("--taskrevision")
    p.add_argument("--timeout", type=int, help="seconds the grading may take")
    p.add_argument("--idempotency-key", help="sending again with the same key queues it once")
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser("list", help="jobs, newest first")
    for key in FILTERS:
        p.add_argument(f"--{key}", help="ISO 8601 time" if key in ("since", "until") else None)
    p.add_argument("--limit", type=int, default=50, help="show at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("status", help="a job's state, position and timeline")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("watch", help="follow a job until it ends (exit 0: FINISHED, 1: not)")
    p.add_argument("id", type=int)
    p.set_defaults(run=cmd_watch)

    for action in ("cancel", "hold", "release", "requeue"):
        p = sub.add_parser(action, help=f"{action} one job")
        p.add_argument("id", type=int)
        if action != "cancel":  # a cancelled job has no priority to change
            p.add_argument("--priority", type=int, help="its new priority")
        p.set_defaults(run=_act_one(action))


def _other_commands(sub: Any) -> None:
    p = sub.add_parser("act", help="one action on every job a filter matches")
    p.add_argument("action", choices=("cancel", "hold", "release", "requeue"))
    keys = ", ".join(FILTERS)
    p.add_argument(
        "--filter", action="extend", nargs="+", required=True, metavar="KEY=VALUE", help=keys
    )
    p.add_argument("--priority", type=int)
    p.add_argument("--dry-run", action="store_true", help="only count the jobs it would change")
    p.set_defaults(run=cmd_act)

    p = sub.add_parser("artifact", help="a job's result, stdout or stderr")
    p.add_argument("id", type=int)
    p.add_argument("name", help="result, stdout or stderr")
    p.add_argument("-o", "--output", help="write it to this file (default: stdout)")
    p.set_defaults(run=cmd_artifact)

    for name, run, about in (
        ("queue", cmd_queue, "what waits, and how fast jobs finish"),
        ("servers", cmd_servers, "the grading servers"),
    ):
        p = sub.add_parser(name, help=about)
        p.add_argument("--json", action="store_true")
        p.set_defaults(run=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The graderqueue JSON API's client.")
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _job_commands(sub)
    _other_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url (or GRADERQUEUE_URL) is required")
    try:
        api = ApiClient(args.url, _auth(args))
        return args.run(api, args) or 0
    except ApiError as exc:
        _fail(exc.title + (f" - {exc.detail}" if exc.detail else ""), f"(HTTP {exc.status})")
    except UsageError as exc:
        _fail(exc.message)
    except requests.RequestException as exc:
        _fail(f"cannot reach {args.url}: {exc}")
    except OSError as exc:  # -o FILE, or stdout closed (| head)
        _fail(f"{exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130
    return 2


def _fail(*words: str) -> None:
    print(f"{PROG}: " + " ".join(words), file=sys.stderr)
