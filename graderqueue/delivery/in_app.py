"""The delivery thread inside each web worker process."""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Any

from graderqueue.config import Settings
from graderqueue.delivery.callbacks import Poster
from graderqueue.delivery.worker import Worker
from graderqueue.protocol.keys import QueueKeys
from graderqueue.store.db import Database


class InProcessDelivery:
    """The delivery thread of one web worker process.

    Started with the app and again, if needed, by the first kick after a fork
    (a thread does not survive ``fork``), so it also works with gunicorn's
    ``preload_app``.
    """

    def __init__(self, db: Database, settings: Settings, keys: QueueKeys) -> None:
        self.db, self.settings, self.keys = db, settings, keys
        self._lock = threading.Lock()
        self._pid = 0
        self.worker: Worker | None = None
        self.thread: threading.Thread | None = None
        # Callback URLs (callbacks.py), on a thread of their own.
        self.poster: Poster | None = None
        self.poster_thread: threading.Thread | None = None

    def ensure_running(self) -> None:
        if self._pid == os.getpid() and self.thread is not None and self.thread.is_alive():
            return
        with self._lock:
            if self._pid == os.getpid() and self.thread is not None and self.thread.is_alive():
                return
            if self._pid != os.getpid():
                atexit.register(_stop_at_exit, weakref.ref(self))
            self.worker = Worker(self.db, self.settings, self.keys)
            # The thread lives as long as its app: it holds the runner only
            # weakly, so an app that is dropped (tests build many) stops it.
            ref = weakref.ref(self)
            self.thread = threading.Thread(
                target=self.worker.run_forever,
                args=(lambda: ref() is not None,),
                name="gq-delivery",
                daemon=True,
            )
            self.poster = Poster(self.db, self.settings, self.keys)
            self.poster_thread = threading.Thread(
                target=self.poster.run_forever,
                args=(lambda: ref() is not None,),
                name="gq-callbacks",
                daemon=True,
            )
            self._pid = os.getpid()
            self.thread.start()
            self.poster_thread.start()

    def kick(self, callbacks: bool = True) -> None:
        self.ensure_running()
        assert self.worker is not None and self.poster is not None
        self.worker.kick()
        if callbacks:
            self.poster.kick()

    def stop(self, timeout: float | None = None) -> None:
        """Stop and wait for the posts under way, so that their outcomes are recorded."""
        worker, thread = self.worker, self.thread
        if worker is None or thread is None or self._pid != os.getpid():
            return
        worker.stop()
        if self.poster is not None:
            self.poster.stop()
        thread.join(self.settings.delivery_timeout_sec * 2 + 2 if timeout is None else timeout)


def _stop_at_exit(ref: weakref.ref[InProcessDelivery]) -> None:
    # A web worker exiting (gunicorn's SIGTERM): let the posts under way be recorded.
    runner = ref()
    if runner is not None:
        runner.stop()


def start_in_app(app: Any, rt: Any) -> InProcessDelivery | None:
    """Run a delivery thread in this web worker process, if delivery is enabled.

    Every process of every node runs one; they share the work through the
    database. ``rt.delivery_kick`` lets a stored result go out at once.
    """
    if not rt.settings.delivery_enabled:
        return None
    runner = InProcessDelivery(rt.db, rt.settings, rt.keys)
    app.extensions["graderqueue.delivery"] = runner
    rt.delivery_kick = runner.kick
    runner.ensure_running()
    return runner
