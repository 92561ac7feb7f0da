"""Durations between two timestamp columns, computed by the database.

Numbers are much cheaper for the drivers to hand over than timestamps, and
an average of durations can only be taken in SQL this way. Each dialect has
its own spelling: SQLite counts days, MariaDB microseconds.
"""

from __future__ import annotations

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class SecondsBetween(FunctionElement):
    """Seconds from the first timestamp to the second, as a float, on every dialect."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(SecondsBetween)
def _seconds_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(SecondsBetween, "mysql")
@compiles(SecondsBetween, "mariadb")
def _seconds_mysql(element, compiler, **kw):  # type: ignore[no-untyped-def]
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"(TIMESTAMPDIFF(MICROSECOND, {start}, {end}) / 1000000.0)"
