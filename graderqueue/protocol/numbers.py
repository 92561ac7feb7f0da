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
# What PHP's intval() reads of a string: blanks, a sign, then leading digits.
_PHP_PREFIX = re.compile(r"[ \t\n\r\v\f]*([+-]?)0*([0-9]*)")


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


def php_intval(value: object, maximum: int) -> int:
    """``value`` read as the PHP graderqueue's ``intval()`` read it, clamped to ±``maximum``.

    Only for platforms that asked for it (``platform update --lenient-integers``):
    leading digits count and the rest is ignored ("5.7" -> 5, "12abc" -> 12,
    "abc" -> 0); a float is truncated; true is 1. A value past the bounds is
    clamped, as PHP clamps to its own integer range. Exponents ("1e3") are not
    read: the queue's PHP versions read "1e3" as 1.
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return 0
        value = int(max(-maximum, min(maximum, value)))
    if isinstance(value, int):
        return max(-maximum, min(maximum, value))
    if not isinstance(value, str):
        return 0
    match = _PHP_PREFIX.match(value)  # all its parts are optional: it always matches
    assert match is not None
    sign, digits = match.group(1), match.group(2)
    if not digits:
        return 0
    # Past the bound's own length the value is clamped anyway: no int() of
    # thousands of digits.
    number = maximum if len(digits) > len(str(maximum)) else min(int(digits), maximum)
    return -number if sign == "-" else number
