"""Server-sent events as the JSON API streams them (``GET /api/v1/jobs/{id}/events``):
bytes cut anywhere -> lines -> events. Plain functions, no HTTP: the client
(apiclient.py) feeds them a response's chunks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

LINE_END = re.compile(rb"\r\n|\r|\n")


class Event(NamedTuple):
    """One change of a job: ("state", "STARTED") or ("position", 3), with its event id."""

    id: str | None
    type: str
    data: Any


def sse_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines of an event stream, however its bytes are cut: CRLF, LF or CR end a line."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        # A CR at the end may be the first half of a CRLF: keep it for the next chunk.
        cut = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        *lines, rest = LINE_END.split(pending[:cut])
        pending = rest + pending[cut:]
        yield from (line.decode("utf-8", "replace") for line in lines)
    # What follows the last line end is an unfinished line, dropped as the spec says.
    yield from (line.decode("utf-8", "replace") for line in LINE_END.split(pending)[:-1])


def parse_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """A job's event stream by the WHATWG rules (``: keepalive`` is a comment): ``data:
    {"type": T, "data": D}`` is Event(id, T, D); other data stays under the event's name."""
    last_id: str | None = None
    name, data = "", []
    for line in sse_lines(chunks):
        if not line:
            if data:  # a message with no data is not dispatched
                yield _event(last_id, name or "message", "\n".join(data))
            name, data = "", []
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "data":
                data.append(value)
            elif key == "event":
                name = value
            elif key == "id" and "\0" not in value:
                last_id = value  # it stays the last id until another one comes


def _event(last_id: str | None, name: str, text: str) -> Event:
    try:
        payload = json.loads(text)
    except ValueError:
        return Event(last_id, name, text)
    if isinstance(payload, dict) and "type" in payload:
        return Event(last_id, str(payload["type"]), payload.get("data"))
    return Event(last_id, name, payload)


# -- the client
