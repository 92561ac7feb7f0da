"""``status``: the queue, its servers, deliveries and alerts on one screen."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from graderqueue.cli import Context, fail_clearly, pass_ctx
from graderqueue.maintenance.status import collect

# Lost servers and failing platforms listed by name; the rest are counted.
NAMES_SHOWN = 8


def age(seconds: float | None) -> str:
    """A duration for people: "45 s", "3 min 20 s", "2 h 5 min", "3 d 4 h"; "-" for none."""
    if seconds is None:
        return "-"
    s = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60)):
        if s >= size:
            return f"{s // size} {unit} {s % size // sub_size} {sub}"
    if s >= 60:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s} s"


def _table(header: Sequence[str], rows: list[Sequence[Any]]) -> list[str]:
    """Columns padded to their widest cell: the first left-aligned, numbers right."""
    cells = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  "
        + "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in cells
    ]


def _names(items: list[str]) -> str:
    more = len(items) - NAMES_SHOWN
    return ", ".join(items[:NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _dispatch(d: dict[str, Any]) -> list[str]:
    state = "PAUSED for every type" if d["paused"] else "running"
    if d["paused_types"]:
        state += f"; paused types: {', '.join(d['paused_types'])}"
    lines = [f"Dispatch: {state}"]
    if d["drained_servers"]:
        lines.append(f"  drained servers: {_names(d['drained_servers'])}")
    return lines


def _queue_and_servers(q: dict[str, Any], servers: dict[str, Any]) -> list[str]:
    lines = [
        f"Queue: {q['waiting']} waiting (oldest {age(q['oldest_waiting_sec'])}),"
        f" {q['running']} running, {q['held']} held, {q['failed']} failed;"
        f" {q['finished_recently']} finished in the last {age(q['recent_window_sec'])}"
    ]
    by_type = {row["type"]: row for row in servers["by_type"]}
    rows = [
        [t["type"], t["waiting"], age(t["oldest_waiting_sec"])]
        + [by_type[t["type"]][k] for k in ("registered", "alive", "busy", "drained", "lost")]
        for t in q["by_type"]
    ]
    header = ("type", "waiting", "oldest", "servers", "alive", "busy", "drained", "lost")
    lines += _table(header, rows) if rows else ["  no server types"]
    lost = [f"{s['name']} ({s['wakeup_fails']} failed wake-ups)" for s in servers["lost"]]
    if lost:
        lines.append(f"  lost (silent; wake-ups fail or a lease ran out): {_names(lost)}")
    return lines


def _delivery(d: dict[str, Any]) -> list[str]:
    lines = [
        f"Delivery: {d['pending']} pending (oldest {age(d['oldest_pending_sec'])}),"
        f" {d['given_up_recently']} given up in the last day"
    ]
    for f in d["failing"][:NAMES_SHOWN]:
        error = (f["last_error"] or "").splitlines()[0][:80] if f["last_error"] else "?"
        lines.append(
            f"  failing: {f['platform']}: {f['pending']} pending"
            f" (attempts: {f['attempts']}); last error: {error}"
        )
    return lines


def _alerts(a: dict[str, Any]) -> list[str]:
    lines = [f"Alerts e-mailed in the last day: {a['recent']}"]
    lines += [f"  {x['time']}  {x['message'][:100]}" for x in a["latest"]]
    return lines


def _fair_share(platforms: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            p["platform"] + (" (disabled)" if p["disabled"] else ""),
            p["weight"],
            p["queued"],
            "-" if p["max_queued"] is None else p["max_queued"],
            "-" if p["share"] is None else f"{p['share']:.0%}",
        ]
        for p in platforms
    ]
    header = ("platform", "weight", "queued", "max_queued", "share")
    return ["Fair share:", *(_table(header, rows) if rows else ["  no platforms"])]


def render(summary: dict[str, Any]) -> list[str]:
    """The summary as text, about one screen."""
    return [
        f"graderqueue status at {summary['time']}",
        *_dispatch(summary["dispatch"]),
        *_queue_and_servers(summary["queue"], summary["servers"]),
        *_delivery(summary["delivery"]),
        *_alerts(summary["alerts"]),
        *_fair_share(summary["fair_share"]),
    ]


@click.command(short_help="The queue on one screen: jobs, servers, alerts.")
@click.option("--json", "as_json", is_flag=True, help="JSON, for scripts.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """One screen: jobs waiting per server type and the oldest wait, held and
    failed jobs; servers alive, busy, drained and lost per type; whether
    dispatch is paused; results not yet delivered and the platforms that
    fail; alerts e-mailed in the last day; each platform's fair share.

    Reads only. Times are UTC. docs/AUTOSCALING.md describes each figure.
    """
    with fail_clearly(), ctx.db.reading() as session:
        summary = collect(session, ctx.settings)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for line in render(summary):
        click.echo(line)


def register(cli: click.Group) -> None:
    cli.add_command(status)
