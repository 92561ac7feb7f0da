"""Whether the HTTP client of a long-poll is still there.

A grading server that gave up on its poll (killed, restarted, timed out by
a proxy) must not be handed a job: the job would sit leased to nobody until
its lease expired and then count as a failure. Before each claim after a
wait, the poll peeks at its socket; an orderly close from the other side
reads as end of file. Behind nginx this works too: nginx closes its upstream
connection when its client goes away (``proxy_ignore_client_abort off``,
the default).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any


def client_gone(environ: Mapping[str, Any]) -> bool:
    """True only when the peer has certainly closed the connection.

    Unknown servers (no ``gunicorn.socket``, e.g. the development server)
    and TLS sockets (a peek would read TLS records) always count as present.
    """
    sock = environ.get("gunicorn.socket")
    if type(sock) is not socket.socket:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read: still connected
    except OSError:
        return True  # reset by peer, or the socket is already closed
