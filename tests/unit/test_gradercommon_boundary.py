"""The queue and the daemon meet only in gradercommon, which needs neither.

The daemon is installed on grading servers without the queue's
dependencies, and the queue must not reach into the daemon's internals.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Each module file of ``package`` with the top-level packages it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("graderqueue", "graderserver"), ("graderserver", "graderqueue")],
)
def test_neither_side_imports_the_other(package, forbidden):
    offenders = [path for path, names in imported_packages(package).items() if forbidden in names]
    assert offenders == []


def test_gradercommon_needs_the_standard_library_only():
    allowed = set(sys.stdlib_module_names) | {"__future__", "gradercommon"}
    extra = {path: names - allowed for path, names in imported_packages("gradercommon").items()}
    assert {path: names for path, names in extra.items() if names} == {}
