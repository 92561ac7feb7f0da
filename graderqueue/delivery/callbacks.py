"""Callback URLs: a job's result, or a run's end, posted to a URL its submitter named.

Two rules keep a callback from becoming a way into the queue's network
(server-side request forgery):

- the URL's host must be one the platform's registration allows
  (``graderqueue platform update NAME --callback-hosts h1,h2``; with none
  listed, only the host of its return URL);
- unless the host is listed explicitly, every address it resolves to must be
  public: loopback, private, link-local and reserved addresses are refused,
  at submission and again before each post (a name may resolve elsewhere
  later).

Rows wait in the ``callbacks`` table, written in the transaction that ends
the job or the run, and are posted as a return-URL result is: an ``sToken``
signed by the queue and encrypted to the platform, with the delivery
settings' retries, backoff and give-up horizon.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.delivery import outbox
from graderqueue.delivery.outbox import backoff_sec
from graderqueue.delivery.post import Outcome, post_result
from graderqueue.errors import BadRequest
from graderqueue.protocol.keys import QueueKeys
from graderqueue.protocol.results import result_payload, result_token
from graderqueue.registry.view import PlatformInfo
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import (
    Callback,
    DeliveryState,
    Job,
    Platform,
    PlatformKey,
    Result,
    utcnow,
)

log = logging.getLogger(__name__)

URL_MAX = 1000
CB = Callback.__table__
_INSERT = insert(CB)


def allowed_hosts(callback_hosts: str, return_url: str) -> tuple[set[str], bool]:
    """The hosts a platform's callbacks may name, and whether they were listed
    explicitly (else: the return URL's host, by default)."""
    listed = {h.strip().lower() for h in callback_hosts.split(",") if h.strip()}
    if listed:
        return listed, True
    host = (urlsplit(return_url).hostname or "").lower()
    return ({host} if host else set()), False


def _public(host: str, port: int) -> str | None:
    """None if every address of ``host`` is public; else what is wrong."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"the host {host} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            return (
                f"the host {host} resolves to {address}, a private or local address "
                "(list the host in the platform's callback hosts to allow it)"
            )
    return None


def check_url(url: Any, callback_hosts: str, return_url: str) -> str:
    """The callback URL if the platform may use it; :class:`BadRequest` otherwise."""
    if not isinstance(url, str) or not url:
        raise BadRequest("callback_url is a non-empty string.")
    if len(url) > URL_MAX:
        raise BadRequest(f"callback_url is at most {URL_MAX} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise BadRequest(f"callback_url is not a URL: {exc}.") from exc
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise BadRequest("callback_url must be an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise BadRequest("callback_url may not carry a user name or password.")
    hosts, listed = allowed_hosts(callback_hosts, return_url)
    if host not in hosts:
        raise BadRequest(
            f"callback_url: the host {host} is not one this platform's callbacks may use."
        )
    if not listed:
        problem = _public(host, port)
        if problem is not None:
            raise BadRequest(f"callback_url: {problem}.")
    return url


def check_for(url: Any, platform: PlatformInfo | None) -> str:
    """``check_url`` for a submission's caller (an operator has no key to encrypt to)."""
    if platform is None:
        raise BadRequest("callback_url needs a platform: callbacks are encrypted to it.")
    return check_url(url, platform.callback_hosts, platform.return_url)


def owe_job(session: Session, job_id: int, platform_id: int, url: str, now: datetime) -> None:
    """A done job's result owed to its callback URL (its result is read when posted)."""
    _owe(session, platform_id, url, now, job_id=job_id, body="")


def owe_run(
    session: Session, run_id: int, platform_id: int, url: str, body: dict[str, Any]
) -> None:
    """A run's end owed to its callback URL, with the run's final status."""
    _owe(session, platform_id, url, utcnow(), run_id=run_id, body=json.dumps(body))


def _owe(session: Session, platform_id: int, url: str, now: datetime, **row: Any) -> None:
    session.execute(
        _INSERT,
        {
            "platform_id": platform_id,
            "url": url,
            "state": DeliveryState.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "last_error": "",
            **row,
        },
    )


@dataclass(frozen=True)
class DueCallback:
    id: int
    url: str
    attempts: int
    created_at: datetime
    job_id: int | None
    run_id: int | None
    payload: dict[str, Any]
    platform_name: str
    callback_hosts: str
    return_url: str
    key_pem: str | None


_ANY_DUE = select(Callback.id).where(outbox.due_rows(Callback)).limit(1)


def claim(
    session: Session, dialect: str, holder: str, lease_sec: float, limit: int
) -> list[DueCallback]:
    """Claim up to ``limit`` due rows for ``holder`` until the lease ends."""
    now = utcnow()
    ids = outbox.lock_due(session, Callback, dialect, holder, lease_sec, limit, now)
    if not ids:
        return []
    rows = session.execute(
        select(Callback, Platform.name, Platform.callback_hosts, Platform.return_url)
        .join(Platform, Platform.id == Callback.platform_id)
        .where(Callback.id.in_(ids), Callback.locked_by == holder)
    ).all()
    return [_loaded(session, row, now) for row in rows]


def _loaded(session: Session, row: Any, now: datetime) -> DueCallback:
    cb: Callback = row[0]
    if cb.job_id is not None:
        found = session.execute(
            select(Job.name, Result.resultdata)
            .outerjoin(Result, Result.job_id == Job.id)
            .where(Job.id == cb.job_id)
        ).first()
        name, data = (found[0], found[1] or "{}") if found else ("", "{}")
        payload = result_payload(name, data, now.date())
    else:
        payload = {"run": json.loads(cb.body), "date": now.date().strftime("%d-%m-%Y")}
    key = session.scalar(
        select(PlatformKey.public_key)
        .where(PlatformKey.platform_id == cb.platform_id, PlatformKey.active.is_(True))
        .order_by(PlatformKey.id.desc())
        .limit(1)
    )
    return DueCallback(
        cb.id, cb.url, cb.attempts, cb.created_at, cb.job_id, cb.run_id, payload,
        row[1], row[2] or "", row[3] or "", key,
    )  # fmt: skip


def attempt(
    due: DueCallback, keys: QueueKeys, settings: Settings, http: requests.Session
) -> Outcome:
    """One post; the host rules are checked again first (names move)."""
    try:
        check_url(due.url, due.callback_hosts, due.return_url)
    except BadRequest as exc:
        return Outcome(False, exc.message)
    if due.key_pem is None:
        return Outcome(False, "the platform has no active public key")
    try:
        token = result_token(
            due.payload, keys.active, due.platform_name, due.key_pem, settings.result_zip_max_bytes
        )
    except Exception as exc:  # a bad stored key must not stop the worker
        return Outcome(False, f"cannot make the token: {type(exc).__name__}")
    return post_result(http, due.url, token, settings.delivery_timeout_sec)


def record(
    session: Session, due: DueCallback, holder: str, outcome: Outcome, settings: Settings
) -> None:
    """The row's next state, as a return-URL delivery's: delivered, retried later, given up."""
    now = utcnow()
    values: dict[str, Any] = {
        "attempts": Callback.attempts + 1,
        "last_attempt_at": now,
        "locked_by": None,
        "locked_until": None,
        "last_error": outcome.error,
    }
    if outcome.ok:
        values.update(state=DeliveryState.DELIVERED, delivered_at=now)
    elif (now - due.created_at).total_seconds() >= settings.delivery_give_up_after_sec:
        values.update(state=DeliveryState.GIVEN_UP)
    else:
        retry = now + timedelta(seconds=backoff_sec(due.attempts + 1, settings))
        values.update(next_attempt_at=retry)
    won = session.execute(
        update(Callback)
        .where(Callback.id == due.id, Callback.locked_by == holder)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount == 1 and not outcome.ok and due.attempts == 0:
        what = f"run #{due.run_id}" if due.run_id is not None else "result"
        events.log_event(
            session,
            events.DELIVERY_FAILED,
            job_id=due.job_id,
            message=f"callback ({what}) to {due.url}: {outcome.error}",
        )


def any_due(db: Database) -> bool:
    """Whether a callback is due now; only reads (an idle poster never takes a write lock)."""
    with db.reading() as session:
        now = utcnow()
        return session.scalar(_ANY_DUE, {"now": now, "due_before": now}) is not None


def deliver_due(
    db: Database, settings: Settings, keys: QueueKeys, http: requests.Session, holder: str
) -> int:
    """Post every callback due now, a batch at a time; returns how many were tried."""
    lease = 2 * (2 * settings.delivery_timeout_sec + 1) + settings.delivery_lease_slack_sec
    tried = 0
    while tried < 1000 and any_due(db):  # the rest next pass: never hold the caller for ever
        with db.transaction() as session:
            batch = claim(session, db.dialect, holder, lease, max(1, settings.delivery_concurrency))
        if not batch:
            return tried  # another node's
        for due in batch:
            outcome = attempt(due, keys, settings, http)
            with db.transaction() as session:
                record(session, due, holder, outcome, settings)
            tried += 1
    return tried


class Poster:
    """Posts due callbacks, one at a time, on a thread of its own beside the
    results' delivery worker (callbacks are few, and never take the results'
    post slots): every ``delivery_poll_sec``, or at once when kicked."""

    def __init__(self, db: Database, settings: Settings, keys: QueueKeys) -> None:
        self.db, self.settings, self.keys = db, settings, keys
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}/callbacks"
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._http = requests.Session()
        self._failing_since: float | None = None

    def kick(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run_pass(self) -> int:
        """Post what is due now; a failure (the database away) is logged, not raised."""
        try:
            tried = deliver_due(self.db, self.settings, self.keys, self._http, self.holder)
        except Exception:
            now = time.monotonic()
            if self._failing_since is None or (
                now - self._failing_since >= self.settings.failure_log_interval_sec
            ):
                self._failing_since = now
                log.warning("callback pass failed; trying again shortly", exc_info=True)
            return 0
        self._failing_since = None
        return tried

    def run_forever(self, alive: Callable[[], bool] = lambda: True) -> None:
        try:
            while not self.stopping.is_set() and alive():
                self.wake.clear()
                self.run_pass()
                self.wake.wait(max(self.settings.delivery_poll_sec, 0.05))
        finally:
            self._http.close()
