#!/usr/bin/env python3
"""A `graderqueue autoscale --hook` for a machine with systemd: runs as many
instances of graderserver@.service (graderserver@1, @2, ...) as the queue
wants for one server type, up to what the machine can take.

    graderqueue autoscale --hook "/path/to/systemd-fleet.py --type general --max 8"

Running instances are the graderserver@<number> units systemd lists as
active. More wanted: the lowest free numbers are started. Fewer: the highest
are stopped; each finishes the jobs it runs first (graderserver@.service).
Start and stop do not wait (--no-block), so the hook returns at once.

Standard library only. Exit status 1 when the type is not in the queue's
answer or a systemctl call fails.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys

UNIT = re.compile(r"graderserver@(\d+)\.service")


def running(systemctl: list[str]) -> list[int]:
    """The instance numbers systemd runs now, in order."""
    query = ["list-units", "--plain", "--no-legend", "--state=active", "graderserver@*.service"]
    listed = subprocess.run(
        [*systemctl, *query],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = (UNIT.fullmatch(line.split()[0]) for line in listed.splitlines() if line.strip())
    return sorted(int(match[1]) for match in found if match)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--type", required=True, help="the server type these instances are")
    parser.add_argument("--max", type=int, default=4, help="instances this machine can run")
    parser.add_argument("--systemctl", default="systemctl", help="how to call systemctl")
    parser.add_argument("--dry-run", action="store_true", help="say what, change nothing")
    args = parser.parse_args()

    figures = json.load(sys.stdin)["types"].get(args.type)
    if figures is None:
        print(f"no server type {args.type!r} in the queue's answer", file=sys.stderr)
        return 1
    wanted = max(0, min(figures["wanted"], args.max))
    systemctl = shlex.split(args.systemctl)
    have = running(systemctl)
    if len(have) < wanted:
        free = (n for n in range(1, args.max + len(have) + 1) if n not in have)
        verb, numbers = "start", [next(free) for _ in range(wanted - len(have))]
    elif len(have) > wanted:
        verb, numbers = "stop", have[wanted:]
    else:
        print(f"{args.type}: {len(have)} running, as wanted")
        return 0
    units = [f"graderserver@{n}.service" for n in numbers]
    print(f"{args.type}: {len(have)} running, {wanted} wanted: {verb} {' '.join(units)}")
    if args.dry_run:
        return 0
    return 0 if subprocess.run([*systemctl, verb, "--no-block", *units]).returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
