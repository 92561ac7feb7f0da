"""A platform's return URL for tests: a real HTTP server on 127.0.0.1.

It opens every ``sToken`` it gets the way a platform does (decrypt with the
platform's private key, verify with the queue's public key), fails the first
``fail_times`` requests (HTTP 500, or ``{"bSuccess": false}``), then accepts,
and records everything, including how many requests it was answering at
once. It can be stopped and started again on the same port, to play a
platform that is down for a while.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from jwcrypto import jwk

from graderqueue.client import open_result_token
from graderqueue.protocol.tokens import compact_header
from harness.processes import free_port


@dataclass
class Arrival:
    token: str
    payload: dict[str, Any] | None  # None when the token did not open
    error: str
    accepted: bool  # answered bSuccess true


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: the queue's concurrent posts
    # (several per worker, several workers) would overflow it and get
    # connections reset, which a platform behind a real web server does not do.
    request_queue_size = 128
    daemon_threads = True


@dataclass
class PlatformEndpoint:
    platform_private_pem: str
    queue_public_pem: str
    fail_times: int = 0
    # "http500": fail with HTTP 500 and no JSON; "refuse": HTTP 200, bSuccess false.
    fail_mode: str = "http500"
    # Seconds each answer takes (to stop a queue in the middle of its posts).
    delay: float = 0.0
    # Called with each opened payload (None if it did not open) before the
    # answer, on the request's thread: to change the queue during a post.
    on_arrival: Callable[[dict[str, Any] | None], None] | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    # Requests being answered right now, and the most there ever were at once.
    in_progress: int = field(default=0, init=False)
    max_in_progress: int = field(default=0, init=False)
    # Requests that have begun to be answered, ever (only grows).
    entered: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._private = jwk.JWK.from_pem(self.platform_private_pem.encode())
        self._queue_key = jwk.JWK.from_pem(self.queue_public_pem.encode())
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/results"

    # -- what arrived -------------------------------------------------------

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Payloads answered with bSuccess true, in order of arrival."""
        with self._lock:
            return [a.payload for a in self.arrivals if a.accepted and a.payload is not None]

    def accepted_names(self) -> list[str]:
        return sorted(p["sTaskName"] for p in self.accepted)

    def wait_accepted(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until ``count`` results were accepted."""

        def accepted() -> int:
            return sum(a.accepted for a in self.arrivals)

        self._wait_for(
            lambda: accepted() >= count,
            timeout,
            lambda: (
                f"{accepted()} of {count} results accepted within {timeout} s; "
                f"arrivals: {self.arrivals!r}"[:3000]
            ),
        )
        return self.accepted

    def _wait_for(
        self, reached: Callable[[], bool], timeout: float, what: Callable[[], str]
    ) -> None:
        """Wait until ``reached()`` holds (a bound against hangs, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not reached():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(what())
                self._changed.wait(remaining)

    def wait_in_progress(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` requests are being answered at once."""
        self._wait_for(
            lambda: self.in_progress >= count,
            timeout,
            lambda: f"{self.in_progress} of {count} requests under way",
        )

    def wait_entered(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` requests have begun, whether or not they are over."""
        self._wait_for(
            lambda: self.entered >= count,
            timeout,
            lambda: f"{self.entered} of {count} requests began",
        )

    def wait_arrivals(self, count: int, timeout: float = 60.0) -> None:
        self._wait_for(
            lambda: len(self.arrivals) >= count,
            timeout,
            lambda: f"{len(self.arrivals)} of {count} posts arrived",
        )

    # -- answering ----------------------------------------------------------

    def _answer(self, form: dict[str, list[str]]) -> tuple[int, bytes]:
        token = form.get("sToken", [""])[0]
        payload: dict[str, Any] | None = None
        error = ""
        try:
            payload = open_result_token(
                token, platform_private_key=self._private, queue_public_key=self._queue_key
            )
            header = compact_header(token, 5)
            payload["_kid"] = header.get("kid")
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        if self.on_arrival is not None:
            self.on_arrival(payload)
        with self._changed:
            failing = self.fail_times > 0
            if failing:
                self.fail_times -= 1
            accepted = payload is not None and not failing
            self.arrivals.append(Arrival(token, payload, error, accepted))
            self._changed.notify_all()
        if payload is None:
            return 200, json.dumps({"bSuccess": False, "sError": error}).encode()
        if failing and self.fail_mode == "http500":
            return 500, b"<html>Internal Server Error</html>"
        if failing:
            return 200, json.dumps({"bSuccess": False, "sError": "try again later"}).encode()
        return 200, json.dumps({"bSuccess": True}).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                with endpoint._changed:
                    endpoint.in_progress += 1
                    endpoint.entered += 1
                    endpoint.max_in_progress = max(endpoint.max_in_progress, endpoint.in_progress)
                    endpoint._changed.notify_all()
                try:
                    if endpoint.delay:
                        time.sleep(endpoint.delay)
                    status, body = endpoint._answer(form)
                finally:
                    with endpoint._changed:
                        endpoint.in_progress -= 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    # -- up and down --------------------------------------------------------

    def start(self) -> PlatformEndpoint:
        server = _Server(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=server.serve_forever, name="platform-endpoint", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        """Down: posts get "connection refused" until :meth:`start`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> PlatformEndpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
