"""Signed wake-ups: what the queue signs, the daemon accepts exactly once."""

from __future__ import annotations

import hashlib
import hmac

from gradercommon.wakeup_auth import MAX_SKEW_SECONDS, sign, verify

NOW = 1_700_000_000.25


def test_signed_datagram_has_the_documented_shape():
    datagram = sign("secret", NOW)
    word, stamp, mac = datagram.decode("ascii").split(" ")
    assert word == "wakeup"
    assert float(stamp) == NOW
    expected = hmac.new(b"secret", f"wakeup {stamp}".encode(), hashlib.sha256).hexdigest()
    assert mac == expected


def test_fresh_datagram_is_accepted_once():
    seen: set = set()
    datagram = sign("secret", NOW)
    assert verify("secret", datagram, NOW + 1, seen)
    assert not verify("secret", datagram, NOW + 2, seen), "a replay must be refused"


def test_two_wakeups_in_the_same_second_are_not_replays():
    seen: set = set()
    assert verify("secret", sign("secret", NOW), NOW, seen)
    assert verify("secret", sign("secret", NOW + 0.001), NOW, seen)


def test_wrong_secret_or_tampering_is_refused():
    seen: set = set()
    datagram = sign("secret", NOW)
    assert not verify("other", datagram, NOW, seen)
    tampered = datagram.replace(b"1700000000", b"1700000001")
    assert not verify("secret", tampered, NOW, seen)
    assert seen == set(), "refused datagrams are not remembered"


def test_stale_or_future_datagrams_are_refused():
    seen: set = set()
    assert not verify("secret", sign("secret", NOW - MAX_SKEW_SECONDS - 1), NOW, seen)
    assert not verify("secret", sign("secret", NOW + MAX_SKEW_SECONDS + 1), NOW, seen)
    assert verify("secret", sign("secret", NOW - MAX_SKEW_SECONDS + 1), NOW, seen)


def test_malformed_datagrams_are_refused():
    seen: set = set()
    for datagram in (b"wakeup", b"", b"wakeup abc def", b"wakeup 1 " + b"0" * 63, b"\xff\xfe"):
        assert not verify("secret", datagram, NOW, seen)


def test_replay_memory_stays_bounded():
    seen: set = set()
    for i in range(3000):
        now = NOW + i  # one per second: old entries fall out of the window
        assert verify("secret", sign("secret", now), now, seen)
    assert len(seen) < 1200
