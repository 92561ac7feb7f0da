"""Reading integers out of text that came from outside.

One rule for every form field, token field and admin filter: ASCII digits
only, an optional leading minus where negatives mean something, and a cap on
length. ``str.isdigit`` is not enough: it accepts superscripts and circled
digits that ``int()`` then refuses, and ``int()`` of a long string is slow.
"""

from __future__ import annotations

import re

_UNSIGNED = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"-?[0-9]+")


def spells_int(text: str, *, signed: bool = False) -> bool:
    """Whether ``text`` (surrounding blanks allowed) is digits, of any length."""
    return bool((_SIGNED if signed else _UNSIGNED).fullmatch(text.strip()))


def parse_int(text: str, *, signed: bool = False, max_digits: int = 18) -> int | None:
    """The integer ``text`` spells (surrounding blanks allowed), or None."""
    text = text.strip()
    if not spells_int(text, signed=signed) or len(text.lstrip("-")) > max_digits:
        return None
    return int(text)


def json_int(value: object, minimum: int, maximum: int) -> int | None:
    """An integer from a JSON document within [minimum, maximum], or None.

    JSON Schema counts 3.0 as an integer, so an integral float is one too;
    ``true`` is not (Python would take it for 1).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    if not isinstance(value, int) or not minimum <= value <= maximum:
        return None
    return value
