"""Bound request bodies that come without a Content-Length (``Transfer-Encoding: chunked``).

Flask's ``MAX_CONTENT_LENGTH`` refuses a body whose Content-Length is too
large, but a chunked body has none: werkzeug then reads at most the limit and
parses what it got, so an oversized request was silently cut short and
handled instead of refused. nginx always sends a Content-Length upstream;
this matters when gunicorn is reached directly (which the examples forbid,
but one mistake in a firewall must not change what the queue stores).

:class:`ChunkedBodyLimit` reads such a body before the app sees it, up to one
byte past the limit. Within the limit the app gets it as an ordinary body of
known length (spooled to a temporary file past ``SPOOL_MEMORY_BYTES``);
past it, the app sees a Content-Length over the limit, so the very same
refusal as for a declared oversized body follows (errorcode 2, "Request too
large." on protocol paths) and nothing of the body is handled.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wsgi import ClosingIterator

SPOOL_MEMORY_BYTES = 1024 * 1024
READ_BYTES = 64 * 1024

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _is_chunked(environ: dict[str, Any]) -> bool:
    encoding = environ.get("HTTP_TRANSFER_ENCODING", "")
    return "chunked" in encoding.lower()


class ChunkedBodyLimit:
    """WSGI middleware: a chunked body becomes a sized one, or a refused one."""

    def __init__(
        self,
        app: WSGIApp,
        max_bytes: int,
        larger: Callable[[dict[str, Any]], int | None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # A request's own limit where it has one (a lab file upload), else None.
        self.larger = larger

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not _is_chunked(environ):
            return self.app(environ, start_response)
        own = self.larger(environ) if self.larger is not None else None
        limit = own if own is not None else self.max_bytes
        stream = environ["wsgi.input"]
        # Closed by ClosingIterator once the answer is sent, or below.
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        size = 0
        while size <= limit:
            chunk = stream.read(min(READ_BYTES, limit + 1 - size))
            if not chunk:
                break
            spool.write(chunk)
            size += len(chunk)
        # The body is de-chunked now: drop the header so that werkzeug
        # believes the Content-Length below instead of streaming again.
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        if size > limit:
            spool.close()
            # Over the limit: the app refuses on the length alone and reads
            # nothing (its error handler drains a little more of the
            # connection from the original stream, as for any refused body).
            environ["CONTENT_LENGTH"] = str(size)
            return self.app(environ, start_response)
        spool.seek(0)
        environ["wsgi.input"] = spool
        environ["CONTENT_LENGTH"] = str(size)
        return ClosingIterator(self.app(environ, start_response), [spool.close])
