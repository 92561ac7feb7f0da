"""Listen for UDP wake-ups from the queue and poke the main loop.

The queue sends `wakeup` (or, with a secret, a signed datagram, see
`gradercommon.wakeup_auth`) when a job arrives; we answer `ok` when we will
poll, `no` when unhealthy or shutting down, so the queue can try another
server.

Datagrams that fail verification get no answer at all: with a forged source
address an answer would make us a reflector aimed at someone else.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from gradercommon import wakeup_auth

log = logging.getLogger(__name__)

MAX_DATAGRAM = 1024
# How often the thread looks at its stop flag while no datagram comes.
STOP_CHECK_SECONDS = 0.5


class WakeupListener:
    """A daemon thread bound to (host, port); port 0 picks a free port."""

    def __init__(
        self,
        host: str,
        port: int,
        on_wakeup: Callable[[], None],
        is_willing: Callable[[], bool] = lambda: True,
        secret: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.on_wakeup = on_wakeup
        self.is_willing = is_willing
        self.secret = secret
        self.clock = clock
        self._seen: set = set()
        self._stop = threading.Event()
        self._sock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
        )
        # No SO_REUSEADDR: UDP has no TIME_WAIT to skip, and with it a second
        # daemon could share the port and receive half of the wake-ups.
        self._sock.bind((host, port))
        self._sock.settimeout(STOP_CHECK_SECONDS)
        self._thread = threading.Thread(target=self._loop, name="wakeup", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port), useful when port 0 was asked for."""
        return self._sock.getsockname()[:2]

    def start(self) -> WakeupListener:
        self._thread.start()
        log.info("Listening for wake-ups on udp://%s:%d", *self.address)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._sock.close()

    def accepts(self, datagram: bytes) -> bool:
        """Is this datagram a wake-up we should act on?"""
        if self.secret is None:
            # Without a secret a wake-up carries no authority (it only makes
            # us poll sooner), so a signed one is taken too: the queue may
            # start signing before every server has its secret.
            return datagram.strip() == wakeup_auth.PLAIN or datagram.startswith(b"wakeup ")
        return wakeup_auth.verify(self.secret, datagram, self.clock(), self._seen)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                datagram, sender = self._sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                log.exception("Wake-up socket error")
                time.sleep(STOP_CHECK_SECONDS)
                continue
            try:
                self._handle(datagram, sender)
            except Exception:
                # A bad datagram or a failing callback must not end listening.
                log.exception("Error while handling a wake-up from %s", sender)

    def _handle(self, datagram: bytes, sender: tuple) -> None:
        if not self.accepts(datagram):
            log.info("Ignored an invalid wake-up datagram from %s", sender[0])
            return
        willing = self.is_willing()
        self._sock.sendto(b"ok" if willing else b"no", sender)
        log.info("Wake-up from %s: answered %s", sender[0], "ok" if willing else "no")
        if willing:
            self.on_wakeup()
