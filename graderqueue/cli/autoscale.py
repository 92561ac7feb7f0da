"""``autoscale``: the grading servers each type wants, and the operator's hook that acts."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from typing import Any

import click

from graderqueue.cli import Context, fail_clearly, pass_ctx
from graderqueue.maintenance import autoscale as scaling
from graderqueue.store.models import utcnow

# After the timeout the hook gets SIGTERM, then this long before SIGKILL.
HOOK_GRACE_SEC = 5.0


def payload(plans: list[scaling.Plan], *, dry_run: bool) -> dict[str, Any]:
    """The JSON printed and given to the hook: per type name, figures and decision."""
    return {
        "time": f"{utcnow():%Y-%m-%dT%H:%M:%SZ}",
        "dry_run": dry_run,
        "types": {plan.figures.name: plan.as_json() for plan in plans},
    }


def run_hook(command: str, text: str, timeout: float) -> tuple[str | None, str]:
    """Run the operator's command with ``text`` on its standard input.

    No shell: the command is split as a shell would split words (shlex), so
    a name with spaces is quoted and nothing else is interpreted; an
    operator who needs pipes or variables writes ``sh -c '...'`` or a
    script. It runs in a session of its own, so that on a timeout its
    children are stopped with it. Returns what went wrong (None: exit status
    0) and its output, standard output and error together.
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"cannot read the hook command: {exc}", ""
    if not argv:
        return "the hook command is empty", ""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        return f"cannot run the hook {argv[0]}: {exc.strerror}", ""
    try:
        output, _ = proc.communicate(text, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"the hook ran over {timeout:g} s and was stopped", _stop(proc)
    if proc.returncode < 0:
        return f"the hook was killed by signal {-proc.returncode}", output
    if proc.returncode != 0:
        return f"the hook exited with status {proc.returncode}", output
    return None, output


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM to the hook's whole session, SIGKILL after a grace; what it printed."""
    for sig, wait in ((signal.SIGTERM, HOOK_GRACE_SEC), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            output, _ = proc.communicate(timeout=wait)
            return output
        except subprocess.TimeoutExpired:
            continue
    return ""  # pragma: no cover - communicate() without a timeout does not time out


@click.command(short_help="Servers wanted per type (JSON); --hook acts on it.")
@click.option("--hook", metavar="CMD", help="Run CMD with the JSON on its standard input.")
@click.option(
    "--hook-timeout",
    type=click.FloatRange(min=0.1),
    help="Seconds CMD may run (default: the autoscale_hook_timeout_sec setting).",
)
@click.option("--dry-run", is_flag=True, help="Decide, but remember nothing (no --hook).")
@pass_ctx
def autoscale(ctx: Context, hook: str | None, hook_timeout: float | None, dry_run: bool) -> None:
    """Print, as JSON, how many grading servers each server type wants.

    From the jobs waiting and running, how busy each type's servers were
    over the last minutes and the target wait, within the autoscale_*
    settings; fewer servers only after the scale-down delay, which every
    node running this shares through the database. Run it each minute from
    cron on one node or several.

    --hook CMD runs CMD (no shell; see docs/AUTOSCALING.md) with the JSON
    on its standard input, every run, changed or not; its output goes to
    standard error, and the exit status is 1 when CMD fails or runs over
    its time.
    """
    if dry_run and hook:
        raise click.UsageError("--dry-run remembers nothing, so it runs no hook.")
    with fail_clearly():
        plans = scaling.run(ctx.db, ctx.settings, dry_run=dry_run)
    text = json.dumps(payload(plans, dry_run=dry_run), indent=2)
    click.echo(text)
    if hook is None:
        return
    timeout = hook_timeout or ctx.settings.autoscale_hook_timeout_sec
    problem, output = run_hook(hook, text + "\n", timeout)
    if output:
        click.echo(output.rstrip("\n"), err=True)
    if problem is not None:
        click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    click.echo("hook: exit status 0", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(autoscale)
