"""``python -m scripts.bench [name ...] [options]``: run benchmarks, print tables."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from . import common

NAMES = ["enqueue", "claim", "dispatch", "e2e", "memory"]
# Run only when named: their fills of a million jobs take minutes.
ON_REQUEST = ["admin-pages", "api", "legacy-import", "runs"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/run", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=[*NAMES, *ON_REQUEST, []],
        help=f"default: all but {', '.join(ON_REQUEST)}",
    )
    parser.add_argument(
        "--backends", default="sqlite,mariadb", help="comma-separated: sqlite,mariadb"
    )
    modules = {}
    for name in NAMES + ON_REQUEST:
        path = f"scripts.bench.{name.replace('-', '_')}"
        try:
            modules[name] = importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if exc.name != path:
                raise
    for module in modules.values():
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    common.note(f"Machine: {common.machine()}")
    try:
        for name in args.names or NAMES:
            began = time.monotonic()
            common.note(f"\n== {name} ==")
            modules[name].run(args)
            common.note(f"({name} took {time.monotonic() - began:.0f} s)")
    finally:
        common.stop_mariadb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
