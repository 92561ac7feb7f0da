"""How names appear in human messages: in backticks, like the protocol's "Tag `x` unrecognized."."""

from __future__ import annotations


def quote(value: object) -> str:
    """```name```, with control characters escaped so a name cannot forge extra lines."""
    text = str(value)
    if any(not c.isprintable() for c in text):
        text = text.encode("unicode_escape").decode("ascii")
    return f"`{text}`"
