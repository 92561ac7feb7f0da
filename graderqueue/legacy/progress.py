"""What an import did, table by table, and a plain-text progress bar on stderr."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Tally:
    """One table: rows read, written, already here (an earlier run), left out."""

    read: int = 0
    imported: int = 0
    present: int = 0
    skipped: int = 0


@dataclass
class Report:
    tallies: dict[str, Tally] = field(default_factory=dict)
    #: "tag 'python' #7 -> 'python-7'": names made unique here.
    renamed: list[str] = field(default_factory=list)
    #: What was left out or changed, and why, one line each.
    notes: list[str] = field(default_factory=list)

    def tally(self, table: str) -> Tally:
        return self.tallies.setdefault(table, Tally())

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would import" if dry_run else "imported"
        out = [
            f"{table:<14} read {t.read:>9}  {verb} {t.imported:>9}  "
            f"already here {t.present:>9}  left out {t.skipped:>7}"
            for table, t in self.tallies.items()
        ]
        out += [f"renamed: {line}" for line in self.renamed]
        out += [f"note: {line}" for line in self.notes]
        return out


class Progress:
    """``done: 120000/1000000 (12%)`` rewritten in place on stderr, a few times a second.

    Plain text and no dependency: it reads well in a terminal and in a log.
    """

    def __init__(self, label: str, total: int, out: TextIO | None = None) -> None:
        self.label, self.total, self.count = label, total, 0
        self.out = out if out is not None else sys.stderr
        self._shown_at = 0.0

    def advance(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._shown_at >= 0.5:
            self._shown_at = now
            self._show("\r")

    def _show(self, start: str) -> None:
        share = f" ({100 * self.count // self.total}%)" if self.total else ""
        self.out.write(f"{start}{self.label}: {self.count}/{self.total}{share}")
        self.out.flush()

    def finish(self) -> None:
        self._show("\r")
        self.out.write("\n")
        self.out.flush()
