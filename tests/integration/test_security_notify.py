"""Hints between app nodes are signed; forged ones change nothing and cost no memory.

Issue 11 item 8: the UDP listener that wakes long-polls trusted any
datagram, and 4,000 forged ones with distinct ids grew a worker by 63 MiB.
Here real Hubs listen on real UDP sockets over a real queue database;
forged datagrams come from a plain socket. A correctly signed hint is sent
last as a barrier: the listener handles datagrams in order, so once it has
been seen, everything sent before it has been handled too.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from graderqueue.dispatch.hints import (
    ALL_TYPES,
    MAX_TYPE_COUNTERS,
    PollHints,
    hint_key,
    sign_hint,
)
from harness.queue import QueueSetup

KEY = hint_key("the-shared-secret-key")
OTHER_KEY = hint_key("another-queue-secret")
BARRIER = 999_999


@pytest.fixture
def hubs(sqlite_queue: QueueSetup) -> Iterator[list[PollHints]]:
    made: list[PollHints] = []
    yield made
    for hub in made:
        hub.close()


def listening(hubs: list[PollHints], queue: QueueSetup, key: bytes = KEY) -> PollHints:
    hub = PollHints(queue.db, "127.0.0.1", key)
    hub.ensure_listening()
    hubs.append(hub)
    return hub


def port_of(hub: PollHints) -> int:
    assert hub._sock is not None
    return hub._sock.getsockname()[1]


BATCH = 50  # datagrams in flight at once: well within the socket's buffer


def send(hub: PollHints, *datagrams: bytes) -> None:
    """Send in batches, each followed by a barrier, so the kernel drops none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for start in range(0, len(datagrams), BATCH):
            for data in datagrams[start : start + BATCH]:
                sock.sendto(data, ("127.0.0.1", port_of(hub)))
            after_barrier(hub, sock)


def after_barrier(hub: PollHints, sock: socket.socket | None = None) -> None:
    """Send a signed hint for BARRIER and wait until the listener handled it.

    The listener handles datagrams in order: once the barrier is seen,
    everything sent before it has been handled.
    """
    seen = hub.generation(BARRIER)
    if sock is None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as own:
            own.sendto(sign_hint(KEY, [BARRIER]), ("127.0.0.1", port_of(hub)))
    else:
        sock.sendto(sign_hint(KEY, [BARRIER]), ("127.0.0.1", port_of(hub)))
    assert hub.wait(BARRIER, seen, timeout=30), "the signed barrier hint never arrived"


def test_forged_datagrams_change_nothing(sqlite_queue: QueueSetup, hubs: list[PollHints]) -> None:
    hub = listening(hubs, sqlite_queue)
    old = time.time() - 3600
    good = sign_hint(KEY, [7])
    forged = [
        b"job 7",  # the old, unsigned format
        b"job " + b",".join(str(i).encode() for i in range(300)),
        good[:-1] + bytes([good[-1] ^ 1]),  # a wrong MAC
        good[:-32],  # no MAC
        sign_hint(OTHER_KEY, [7]),  # another queue's key
        sign_hint(KEY, [7], now=old),  # a replay from an hour ago
        b"",
        b"\x00" * 2000,
    ]
    # 4,000 distinct ids, the flood, unsigned and mis-signed.
    forged += [b"job %d" % n for n in range(1, 4001)]
    forged += [sign_hint(OTHER_KEY, [n]) for n in range(1, 4001)]
    send(hub, *forged)
    assert set(hub._generations) == {BARRIER}
    assert hub.generation(7) == 0
    assert hub.dropped_hints == len(forged) - 1  # the empty datagram is no hint at all


def test_signed_hints_from_a_flood_of_ids_keep_the_state_bounded(
    sqlite_queue: QueueSetup, hubs: list[PollHints]
) -> None:
    """Even a node with the key cannot grow the counters table past its bound."""
    hub = listening(hubs, sqlite_queue)
    waiting_type = 4242
    seen = hub.generation(waiting_type)
    send(hub, *[sign_hint(KEY, [n]) for n in range(1, 4001)])
    assert len(hub._generations) <= MAX_TYPE_COUNTERS + 1
    # Hints for types past the bound woke everyone instead: no hint is lost.
    assert hub._generations.get(ALL_TYPES, 0) > 0
    assert hub.generation(waiting_type) != seen


def test_a_signed_hint_from_another_node_wakes_a_long_poll(
    sqlite_queue: QueueSetup, hubs: list[PollHints]
) -> None:
    waiting = listening(hubs, sqlite_queue)
    other_node = PollHints(sqlite_queue.db, "127.0.0.1", KEY)
    hubs.append(other_node)
    seen = waiting.generation(5)
    other_node.publish([5])
    assert waiting.wait(5, seen, timeout=30)
    assert waiting.dropped_hints == 0


def test_a_node_with_another_secret_key_is_ignored(
    sqlite_queue: QueueSetup, hubs: list[PollHints]
) -> None:
    waiting = listening(hubs, sqlite_queue)
    stranger = PollHints(sqlite_queue.db, "127.0.0.1", OTHER_KEY)
    hubs.append(stranger)
    seen = waiting.generation(5)
    stranger.publish([5])
    after_barrier(waiting)
    assert waiting.generation(5) == seen
    assert waiting.dropped_hints == 1


def test_the_app_signs_with_a_key_derived_from_secret_key(sqlite_queue: QueueSetup) -> None:
    """Nodes agree on the key when they share secret_key, and not otherwise."""
    from graderqueue.config import replace
    from graderqueue.runtime import _hint_key

    settings = sqlite_queue.settings
    assert _hint_key(replace(settings, secret_key="s1")) == hint_key("s1")
    assert _hint_key(replace(settings, secret_key="s1")) != hint_key("s2")
    assert hint_key("s1") != b"s1" and len(hint_key("s1")) == 32
    # Without one configured, the instance's generated secret_key (shared by
    # the processes of one instance folder).
    generated = sqlite_queue.instance / "secret_key"
    key = _hint_key(settings)
    assert key == hint_key(generated.read_text().strip())


def test_a_hint_for_too_many_types_for_one_datagram_wakes_everyone(
    sqlite_queue: QueueSetup, hubs: list[PollHints]
) -> None:
    waiting = listening(hubs, sqlite_queue)
    other_node = PollHints(sqlite_queue.db, "127.0.0.1", KEY)
    hubs.append(other_node)
    seen = waiting.generation(5)
    other_node.publish(range(100_000, 100_400))  # 400 ids: over MAX_HINT_BYTES
    assert waiting.wait(5, seen, timeout=30)
    assert waiting.dropped_hints == 0
