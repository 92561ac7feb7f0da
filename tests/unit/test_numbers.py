"""Integers read from outside: ASCII digits only, bounded length."""

from __future__ import annotations

import pytest

from graderqueue.protocol.numbers import parse_int, spells_int
from graderqueue.queue.routing import parse_tags


@pytest.mark.parametrize(
    ("text", "signed", "expected"),
    [
        ("42", False, 42),
        (" 7 ", False, 7),
        ("007", False, 7),
        ("-3", True, -3),
        ("-3", False, None),
        ("--3", True, None),
        ("+3", True, None),
        ("", False, None),
        ("1 2", False, None),
        ("\u00b9", False, None),  # superscript one: str.isdigit() says yes
        ("\u2460", False, None),  # circled one
        ("\u0663", False, None),  # Arabic-Indic three: int() would accept it
        ("1" * 18, False, int("1" * 18)),
        ("1" * 19, False, None),
        ("9" * 5000, False, None),  # refused before int() is asked
    ],
)
def test_parse_int(text: str, signed: bool, expected: int | None) -> None:
    assert parse_int(text, signed=signed) == expected


def test_spells_int_has_no_length_limit() -> None:
    assert spells_int("9" * 5000)
    assert not spells_int("9" * 5000 + "x")


def test_parse_tags_keeps_order_and_drops_repeats() -> None:
    assert parse_tags(" b, a,b,,c ") == ["b", "a", "c"]
    assert parse_tags(["x", "x", 1]) == ["x", "1"]


def test_parse_tags_takes_a_hundred_thousand_tags() -> None:
    # With a list membership check this took over a minute (quadratic); now
    # about 0.2 s. No timing is asserted: a regression shows as a slow suite.
    names = parse_tags(",".join(f"t{i}" for i in range(100_000)))
    assert len(names) == 100_000
