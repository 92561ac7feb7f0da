"""Wake long-polls at once when a job becomes available, across processes and nodes.

Each web worker process that has a long-poll waiting binds one UDP socket on
``notify_host`` and records it in the ``listeners`` table. Whoever makes a job
available (queued, requeued, released) sends a tiny datagram naming the
job's server types to every live listener after committing. A listener
thread bumps a per-type generation counter and wakes the waiters of those
types, which then claim from the database.

The database stays the truth: a datagram is only a hint to look again, and
a lost one costs at most ``poll_recheck_sec`` of delay, never a job.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import delete, select, update

from .cache import TTLCache
from .db import Database
from .models import Listener, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_SEC = 30.0
PEERS_TTL_SEC = 1.0
LISTENER_STALE_SEC = 120.0
ALL_TYPES = 0


class Hub:
    """One per process (and database)."""

    def __init__(self, db: Database, host: str = "127.0.0.1") -> None:
        self.db = db
        self.host = host
        self._cond = threading.Condition()
        self._generations: dict[int, int] = {}
        self._sock: socket.socket | None = None
        self._listener_id: int | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        self._stopped = False
        # Listeners come and go with worker processes; a list a moment old
        # spares a query per queued job. A process that starts listening is
        # missed for at most PEERS_TTL_SEC, its waiters then recheck anyway.
        self._peers = TTLCache(ttl=PEERS_TTL_SEC)

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
        message = ("job " + ",".join(str(i) for i in ids)).encode()
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
        fresh = utcnow() - timedelta(seconds=LISTENER_STALE_SEC)
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
            sock.settimeout(HEARTBEAT_SEC)
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
            if data.startswith(b"job "):
                try:
                    ids = [int(part) for part in data[4:].split(b",") if part]
                except ValueError:
                    ids = [ALL_TYPES]
                self._bump(ids)
            if time.monotonic() - last_beat >= HEARTBEAT_SEC:
                last_beat = time.monotonic()
                self._heartbeat()

    def _heartbeat(self) -> None:
        try:
            with self.db.transaction() as session:
                session.execute(
                    update(Listener)
                    .where(Listener.id == self._listener_id)
                    .values(heartbeat=utcnow())
                )
                stale = utcnow() - timedelta(seconds=LISTENER_STALE_SEC * 5)
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
