"""What the life-cycle commands share: who acts, and waking pollers after a change.

A command that makes jobs claimable again (undrain, resume, a server removed
with the jobs it held, jobs moved to another type) tells the waiting polls
of every node and wakes idle servers, as the web app does after queueing a
job. It does so after its transaction has committed; if it cannot (no key
pair on this machine, say), the change stands and polls still find the jobs
at their next recheck (poll_recheck_sec).
"""

from __future__ import annotations

from collections.abc import Iterable

import click

from graderqueue.cli import Context
from graderqueue.dispatch import wakeups
from graderqueue.runtime import Runtime

# The event log's name for whoever runs the command (admins: "admin NAME").
CLI = "cli"


def wake(ctx: Context, type_ids: Iterable[int]) -> None:
    """Tell waiting polls on every node, then wake idle servers, for these types."""
    types = sorted(set(type_ids))
    if not types:
        return
    try:
        rt = Runtime.create(ctx.settings)
    except Exception as exc:  # the change is committed: say so, do not fail
        click.echo(f"Warning: could not tell waiting polls ({exc}); they recheck soon.", err=True)
        return
    try:
        rt.jobs_available(types, wake_servers=False)
        # Here, not in the runtime's background thread: this process exits next.
        wakeups.wake_for_types(rt.db, rt.settings, types)
    except Exception as exc:
        click.echo(f"Warning: could not wake servers ({exc}); they recheck soon.", err=True)
    finally:
        rt.db.dispose()
