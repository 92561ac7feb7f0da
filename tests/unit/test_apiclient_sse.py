"""The client's reading of a job's event stream: however the bytes arrive, the same events."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from graderqueue.apiclient_sse import Event, parse_events, sse_lines

# What the queue sends (web/api_v1_events.py): a retry hint, events, keepalive comments;
# and one event's data on two lines, as the SSE format allows.
STREAM = (
    b"retry: 2000\n\n"
    b'id: QUEUED:\nevent: status_update\ndata: {"type": "state", "data": "QUEUED"}\n\n'
    b'id: QUEUED:3\nevent: status_update\ndata: {"type": "position",\ndata: "data": 3}\n\n'
    b": keepalive\n\n"
    b": keepalive\n\n"
    b'id: STARTED:\nevent: status_update\ndata: {"type": "state", "data": "STARTED"}\n\n'
    b'id: FINISHED:\nevent: status_update\ndata: {"type": "state", "data": "FINISHED"}\n\n'
)
EVENTS = [
    Event("QUEUED:", "state", "QUEUED"),
    Event("QUEUED:3", "position", 3),
    Event("STARTED:", "state", "STARTED"),
    Event("FINISHED:", "state", "FINISHED"),
]


def cut(data: bytes, at: list[int]) -> list[bytes]:
    edges = [0, *sorted(set(at)), len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


def test_the_queues_stream_reads_as_its_events():
    assert list(parse_events([STREAM])) == EVENTS


def test_every_single_cut_gives_the_same_events():
    for newline in (b"\n", b"\r\n", b"\r"):
        data = STREAM.replace(b"\n", newline)
        for at in range(len(data) + 1):
            assert list(parse_events(cut(data, [at]))) == EVENTS, (newline, at)


def test_byte_by_byte_too():
    assert list(parse_events(STREAM[i : i + 1] for i in range(len(STREAM)))) == EVENTS


@given(
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(min_value=0, max_value=len(STREAM) * 2), max_size=12),
)
def test_any_line_ending_and_any_cuts(newline, at):
    """LF, CRLF and CR all end lines (WHATWG), a CRLF cut in half included."""
    data = STREAM.replace(b"\n", newline)
    assert list(parse_events(cut(data, [a for a in at if a <= len(data)]))) == EVENTS


def test_a_keepalive_alone_is_no_event_and_an_unfinished_message_is_dropped():
    assert list(parse_events([b": keepalive\n\n: keepalive\n\n"])) == []
    half = b'id: QUEUED:\ndata: {"type": "state", "data": "QUEUED"}\n'  # no blank line yet
    assert list(parse_events([half])) == []
    assert list(parse_events([half, b"\n"])) == [Event("QUEUED:", "state", "QUEUED")]


def test_the_fields_rules():
    stream = (
        b"id: 7\n"
        b"data:first\n"  # no space after the colon
        b"data:  second\n"  # only one space is removed
        b"unknown: ignored\n"
        b"\n"
        b"event: note\ndata\n\n"  # a field name alone: an empty value
        b"id: bad\x00id\ndata: [1, 2]\n\n"  # an id with NUL is ignored: 7 stays
    )
    assert list(parse_events([stream])) == [
        Event("7", "message", "first\n second"),
        Event("7", "note", ""),
        Event("7", "message", [1, 2]),
    ]


def test_lines_decode_utf8_even_when_a_character_is_cut():
    text = "data: é\n\n".encode()
    split = text.index(b"\xc3") + 1
    assert list(sse_lines([text[:split], text[split:]])) == ["data: é", ""]
