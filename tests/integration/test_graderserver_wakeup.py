"""The UDP wake-up listener on 127.0.0.1, with real datagrams."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from gradercommon.wakeup_auth import sign
from graderserver.wakeup import WakeupListener


@pytest.fixture
def start_listener():
    listeners: list[WakeupListener] = []

    def start(**kwargs) -> tuple[WakeupListener, threading.Event]:
        woken = threading.Event()
        listener = WakeupListener("127.0.0.1", 0, on_wakeup=woken.set, **kwargs).start()
        listeners.append(listener)
        return listener, woken

    yield start
    for listener in listeners:
        listener.stop()


def send(listener: WakeupListener, datagram: bytes, wait: float = 2.0) -> bytes | None:
    """Send one datagram; the answer, or None if none came within `wait` s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(datagram, listener.address)
        try:
            return sock.recvfrom(64)[0]
        except TimeoutError:
            return None


def test_plain_wakeup_is_answered_ok_and_wakes(start_listener):
    listener, woken = start_listener()
    assert send(listener, b"wakeup") == b"ok"
    assert woken.wait(2)


def test_unwilling_server_answers_no_and_stays_asleep(start_listener):
    listener, woken = start_listener(is_willing=lambda: False)
    assert send(listener, b"wakeup") == b"no"
    assert not woken.is_set()


def test_garbage_gets_no_answer(start_listener):
    listener, woken = start_listener()
    assert send(listener, b"hello", wait=0.5) is None
    assert not woken.is_set()
    assert send(listener, b"wakeup") == b"ok", "the listener keeps working"


def test_signed_wakeup_is_accepted_once(start_listener):
    listener, woken = start_listener(secret="s3cret")
    datagram = sign("s3cret", time.time())
    assert send(listener, datagram) == b"ok"
    assert woken.wait(2)
    woken.clear()
    assert send(listener, datagram, wait=0.5) is None, "a replay is ignored"
    assert not woken.is_set()


def tampered(datagram: bytes) -> bytes:
    """The datagram with the last hex digit of its signature changed.

    Always changed: setting it to "0" left one signature in 16 intact, and
    the test then failed for a valid datagram being accepted.
    """
    last = datagram[-1:]
    return datagram[:-1] + (b"1" if last == b"0" else b"0")


def test_forged_stale_or_plain_wakeups_are_ignored_with_a_secret(start_listener):
    listener, woken = start_listener(secret="s3cret")
    for datagram in (
        sign("wrong", time.time()),
        sign("s3cret", time.time() - 120),
        b"wakeup",
        tampered(sign("s3cret", time.time())),
    ):
        assert send(listener, datagram, wait=0.5) is None, datagram
    assert not woken.is_set()
    assert send(listener, sign("s3cret", time.time())) == b"ok"


def test_without_a_secret_a_signed_wakeup_is_still_a_wakeup(start_listener):
    listener, woken = start_listener()
    assert send(listener, sign("anything", time.time())) == b"ok"
    assert woken.wait(2)


def test_stop_releases_the_port():
    listener = WakeupListener("127.0.0.1", 0, on_wakeup=lambda: None).start()
    host, port = listener.address
    listener.stop()
    again = WakeupListener(host, port, on_wakeup=lambda: None).start()
    again.stop()
