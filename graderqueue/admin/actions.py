"""Sending jobs from the admin interface's form.

Validated by the same code as a platform's request and queued through
:func:`graderqueue.queue.enqueue.submit`, as sent by the interface (no
platform, so no result delivery). Requeue and cancel are job state changes:
:mod:`graderqueue.queue.states`.
"""

from __future__ import annotations

import secrets
from typing import Any

from graderqueue.config import Settings
from graderqueue.errors import BadRequest
from graderqueue.identity.platforms import INTERFACE
from graderqueue.protocol import submissions
from graderqueue.queue import enqueue
from graderqueue.registry.view import RegistryView
from graderqueue.store.db import Database

# The send-job form may send the same job several times at once (load tests).
MAX_COPIES = 100


def send_from_interface(
    db: Database,
    view: RegistryView,
    settings: Settings,
    fields: dict[str, Any],
    *,
    upload: submissions.Upload | None = None,
    copies: int = 1,
) -> enqueue.Queued:
    """Queue a ``sendjob``/``sendsolution`` request typed into the admin form.

    Without a ``jobusertaskid`` each copy gets a fresh one, so sending twice
    makes two jobs, as the original panel did.
    """
    if not 1 <= copies <= MAX_COPIES:
        raise BadRequest(f"Send between 1 and {MAX_COPIES} copies.")
    given_id = str(fields.get("jobusertaskid") or "").strip()
    if given_id and copies > 1:
        raise BadRequest("Copies need distinct jobusertaskids: leave it empty.")
    subs = [
        submissions.parse(
            {**fields, "jobusertaskid": given_id or f"interface-{secrets.token_hex(8)}"},
            settings,
            upload=upload,
        )
        for _ in range(copies)
    ]
    return enqueue.submit(db, view, settings, subs, platform_id=None, received_via=INTERFACE)
