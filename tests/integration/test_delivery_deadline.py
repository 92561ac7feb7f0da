"""A platform that dribbles its answer cannot hold a delivery past its lease."""

from __future__ import annotations

import socket
import threading
import time

import requests

from graderqueue.delivery import post


def dribbling_platform(stop: threading.Event) -> tuple[socket.socket, threading.Thread]:
    """Answers headers at once, then one body byte every 0.1 s (within any read timeout)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 60\r\n\r\n")  # fmt: skip
            for _ in range(60):
                if stop.is_set():
                    return
                try:
                    conn.sendall(b" ")
                except OSError:
                    return  # the queue hung up: what it should do
                time.sleep(0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_a_dribbled_answer_is_a_failed_attempt_at_the_deadline():
    stop = threading.Event()
    listener, thread = dribbling_platform(stop)
    port = listener.getsockname()[1]
    try:
        with requests.Session() as http:
            outcome = post.post_result(http, f"http://127.0.0.1:{port}/", "token", 0.5)
        assert not outcome.ok
        assert "deadline" in outcome.error, outcome.error
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
