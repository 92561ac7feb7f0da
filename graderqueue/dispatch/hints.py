"""Wake long-polls at once when a job becomes available, across processes and nodes.

Each web worker process that has a long-poll waiting binds one UDP socket on
``notify_host`` and records it in the ``listeners`` table. Whoever makes a job
available (queued, requeued, released) sends a tiny datagram naming the
job's server types to every live listener after committing. A listener
thread bumps a per-type generation counter and wakes the waiters of those
types, which then claim from the database.

The database stays the truth: a datagram is only a hint to look again, and
a lost one costs at most ``poll_recheck_sec`` of delay, never a job.

Anyone who can reach a listener's port can send it datagrams, so a hint is
signed (see :func:`sign_hint`): HMAC-SHA256 with a key every node derives
from the shared ``secret_key`` (:func:`hint_key`), over a timestamp and the
type ids. The listener checks the MAC before it parses or keeps anything,
drops datagrams that fail (counted, logged at most once a minute), and keeps
at most ``MAX_TYPE_COUNTERS`` per-type counters: past that, a hint for a new
type wakes every waiter instead of growing the table.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import delete, select, update

from graderqueue.cache import TTLCache
from graderqueue.config import Settings
from graderqueue.store.db import Database
from graderqueue.store.models import Listener, utcnow

log = logging.getLogger(__name__)

ALL_TYPES = 0

# Signed hints: MAGIC, a big-endian uint64 of milliseconds since the epoch,
# the type ids as ASCII "1,2,3", then HMAC-SHA256 of all that.
HINT_MAGIC = b"gqh1"
HINT_KEY_LABEL = b"graderqueue notify hint key v1"
_STAMP = struct.Struct(">Q")
_MAC_BYTES = 32
_HEADER_BYTES = len(HINT_MAGIC) + _STAMP.size
MAX_HINT_BYTES = 1400  # one unfragmented datagram
MAX_TYPE_COUNTERS = 1024


def hint_key(secret_key: str) -> bytes:
    """The key hints are signed with, derived from ``secret_key``.

    A separate key (HMAC with a fixed label) so that the session secret
    itself never signs anything that travels in the clear.
    """
    if not secret_key:
        raise ValueError("hints need a secret_key")
    return hmac.new(secret_key.encode(), HINT_KEY_LABEL, hashlib.sha256).digest()


def sign_hint(key: bytes, type_ids: Iterable[int], now: float | None = None) -> bytes:
    """The datagram for a hint about ``type_ids``."""
    stamp = int((time.time() if now is None else now) * 1000)
    body = HINT_MAGIC + _STAMP.pack(stamp) + ",".join(str(i) for i in type_ids).encode()
    return body + hmac.new(key, body, hashlib.sha256).digest()


def read_hint(
    key: bytes,
    data: bytes,
    now: float | None = None,
    window_sec: float = Settings.hint_window_sec,
) -> list[int] | None:
    """The type ids of a datagram signed with ``key`` and recent; None otherwise.

    The MAC is checked first: nothing of an unsigned datagram is parsed.
    """
    if not _HEADER_BYTES + _MAC_BYTES <= len(data) <= MAX_HINT_BYTES:
        return None
    body, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        return None
    if not body.startswith(HINT_MAGIC):
        return None
    (stamp,) = _STAMP.unpack_from(body, len(HINT_MAGIC))
    current = time.time() if now is None else now
    # Older or newer than the window: dropped (a replay within it only makes
    # pollers look once more).
    if abs(current - stamp / 1000) > window_sec:
        return None
    ids: list[int] = []
    for part in body[_HEADER_BYTES:].split(b","):
        if not part.isdigit() or len(part) > 18:
            return None
        ids.append(int(part))
    return ids or None


class PollHints:
    """This process's side of hints: publish after a commit, wait in a poll (one per process)."""

    def __init__(
        self, db: Database, host: str, key: bytes, settings: Settings | None = None
    ) -> None:
        self.db = db
        self.host = host
        self._key = key
        self.settings = settings or Settings()
        # Datagrams that failed the MAC, the window or the format.
        self.dropped_hints = 0
        self._dropped_logged = 0
        self._drop_logged_at = 0.0
        self._cond = threading.Condition()
        self._generations: dict[int, int] = {}
        self._sock: socket.socket | None = None
        self._listener_id: int | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        self._stopped = False
        # Listeners come and go with worker processes; a list a moment old
        # spares a query per queued job. A process that starts listening is
        # missed for at most listener_list_cache_sec, its waiters then recheck anyway.
        self._peers = TTLCache(ttl=self.settings.listener_list_cache_sec)

    # -- waiting side -------------------------------------------------------

    def generation(self, type_id: int) -> int:
        self.ensure_listening()
        with self._cond:
            return self._generations.get(type_id, 0) + self._generations.get(ALL_TYPES, 0)

    def wait(self, type_id: int, seen: int, timeout: float) -> bool:
        """Wait until a job of ``type_id`` may have arrived since ``seen``.

        Returns True on a hint, False on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                current = self._generations.get(type_id, 0) + self._generations.get(ALL_TYPES, 0)
                if current != seen:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def _bump(self, type_ids: Iterable[int]) -> None:
        with self._cond:
            for type_id in type_ids:
                self._generations[type_id] = self._generations.get(type_id, 0) + 1
            self._cond.notify_all()

    # -- publishing side ----------------------------------------------------

    def publish(self, type_ids: Iterable[int]) -> None:
        """Tell every waiting poller, here and elsewhere, that jobs of these types exist.

        Call after the transaction that made the job available has committed.
        """
        ids = sorted(set(type_ids)) or [ALL_TYPES]
        self._bump(ids)
        message = sign_hint(self._key, ids)
        if len(message) > MAX_HINT_BYTES:  # too many types for one datagram: wake all
            message = sign_hint(self._key, [ALL_TYPES])
        try:
            peers = self._peers.get("peers", self._load_peers)
        except Exception:  # a hint is not worth failing the request for
            log.warning("could not read the listeners table", exc_info=True)
            return
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for peer in peers:
                if peer.id == self._listener_id and os.getpid() == self._pid:
                    continue
                try:
                    sock.sendto(message, (peer.host, peer.port))
                except OSError:
                    continue

    def _load_peers(self) -> list:  # type: ignore[type-arg]
        fresh = utcnow() - timedelta(seconds=self.settings.listener_stale_sec)
        with self.db.reading() as session:
            return list(
                session.execute(
                    select(Listener.id, Listener.host, Listener.port).where(
                        Listener.heartbeat > fresh
                    )
                ).all()
            )

    # -- listener -----------------------------------------------------------

    def ensure_listening(self) -> None:
        """Register this process as a listener (once per process; writes to the database).

        Call it outside any open transaction: on SQLite it needs the write lock.
        """
        if self._sock is not None and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._sock is not None and self._pid == os.getpid():
                return
            # After a fork the parent's socket and row belong to the parent.
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((self.host, 0))
            sock.settimeout(self.settings.listener_heartbeat_sec)
            port = sock.getsockname()[1]
            with self.db.transaction() as session:
                row = Listener(host=self.host, port=port, pid=os.getpid(), heartbeat=utcnow())
                session.add(row)
                session.flush()
                listener_id = row.id
            self._sock, self._listener_id, self._pid = sock, listener_id, os.getpid()
            self._stopped = False
            threading.Thread(
                target=self._listen, args=(sock,), name="gq-notify", daemon=True
            ).start()
            atexit.register(self.close)

    def _listen(self, sock: socket.socket) -> None:
        last_beat = time.monotonic()
        while not self._stopped:
            try:
                data, _addr = sock.recvfrom(2048)
            except TimeoutError:
                data = b""
            except OSError:
                return
            if data:
                ids = read_hint(self._key, data, window_sec=self.settings.hint_window_sec)
                if ids is None:
                    self._dropped()
                else:
                    self._bump(self._bounded(ids))
            if time.monotonic() - last_beat >= self.settings.listener_heartbeat_sec:
                last_beat = time.monotonic()
                self._heartbeat()

    def _bounded(self, ids: list[int]) -> list[int]:
        """``ids``, with ALL_TYPES for new types once the counters table is full.

        Waking everyone is always correct (a waiter only looks again), so a
        flood of distinct ids costs wake-ups, never memory.
        """
        with self._cond:
            if len(self._generations) + len(ids) <= MAX_TYPE_COUNTERS:
                return ids
            known = [i for i in ids if i in self._generations]
            return known if len(known) == len(ids) else [*known, ALL_TYPES]

    def _dropped(self) -> None:
        # One line a minute at most: a flood must not become a log flood.
        self.dropped_hints += 1
        now = time.monotonic()
        if now - self._drop_logged_at >= self.settings.failure_log_interval_sec:
            log.warning(
                "dropped %d hint datagram(s) with a bad signature, time or format "
                "(do all nodes share secret_key?)",
                self.dropped_hints - self._dropped_logged,
            )
            self._dropped_logged, self._drop_logged_at = self.dropped_hints, now

    def _heartbeat(self) -> None:
        try:
            with self.db.transaction() as session:
                session.execute(
                    update(Listener)
                    .where(Listener.id == self._listener_id)
                    .values(heartbeat=utcnow())
                )
                stale = utcnow() - timedelta(seconds=self.settings.listener_stale_sec * 5)
                session.execute(delete(Listener).where(Listener.heartbeat < stale))
        except Exception:
            log.warning("listener heartbeat failed", exc_info=True)

    def close(self) -> None:
        if self._sock is None or self._pid != os.getpid():
            return
        self._stopped = True
        try:
            with self.db.transaction() as session:
                session.execute(delete(Listener).where(Listener.id == self._listener_id))
        except Exception:
            pass
        self._sock.close()
        self._sock = None
