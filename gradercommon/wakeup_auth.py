"""Signed wake-up datagrams: `wakeup <unix_ts> <hex hmac-sha256>`.

Both sides use this module: the queue calls `sign` to build the datagram, the
daemon calls `verify`. Like all of gradercommon it depends on the standard
library only.

The timestamp is decimal seconds with microseconds: two wake-ups sent within
the same second must not look like a replay of each other.
"""

from __future__ import annotations

import hashlib
import hmac
import re

# A datagram older or newer than this is refused; it bounds how long the
# replay memory must remember a datagram.
MAX_SKEW_SECONDS = 30.0
PLAIN = b"wakeup"

_SIGNED = re.compile(rb"wakeup (\d{1,12}(?:\.\d{1,9})?) ([0-9a-f]{64})")
# Forget old entries only once the memory grows past this, so verify stays cheap.
_PRUNE_ABOVE = 1024


def _mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, now: float) -> bytes:
    """The datagram that wakes a server configured with `secret`, at time `now`."""
    message = b"wakeup %.6f" % now
    return message + b" " + _mac(secret, message).encode("ascii")


def verify(secret: str, datagram: bytes, now: float, seen: set) -> bool:
    """True if `datagram` is a fresh, authentic wake-up never accepted before.

    `seen` is the caller's replay memory of (timestamp, mac) pairs; an
    accepted datagram is added to it, and stale entries are dropped from it.
    """
    match = _SIGNED.fullmatch(datagram.strip())
    if match is None:
        return False
    stamp, mac = match.group(1), match.group(2).decode("ascii")
    ts = float(stamp)
    if abs(now - ts) > MAX_SKEW_SECONDS:
        return False
    if not hmac.compare_digest(mac, _mac(secret, b"wakeup " + stamp)):
        return False
    key = (stamp.decode("ascii"), mac)
    if key in seen:
        return False
    if len(seen) >= _PRUNE_ABOVE:
        # Entries outside the time window would be refused anyway.
        seen.difference_update({k for k in seen if abs(now - float(k[0])) > MAX_SKEW_SECONDS})
    seen.add(key)
    return True
