#!/usr/bin/env python3
"""A `graderqueue autoscale --hook` for AWS: sets the desired capacity of one
EC2 Auto Scaling group of grading servers per server type. An example: read
it, adapt it, test it with --dry-run before pointing it at a real account.

    graderqueue autoscale --hook "/path/to/aws-asg.py --group general=graders-general"

Runs `aws autoscaling set-desired-capacity` for every mapped type at every
call (the same capacity again changes nothing). The group's own MinSize and
MaxSize must allow what the queue may want: keep autoscale_min_servers and
autoscale_max_servers (or autoscale_type_limits) within them. On a
scale-in AWS picks the instances by the group's termination policy: give
the group a termination lifecycle hook long enough for graderserver to
finish its running jobs after SIGTERM (systemd stops it on shutdown).
Instances have addresses of their own, so one server token serves a group.

Standard library only; the aws CLI uses its usual credentials (an instance
role, AWS_PROFILE, ...). Exit status 1 when an aws call fails.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys


def mapping(text: str) -> tuple[str, str]:
    server_type, sep, target = text.partition("=")
    if not sep or not server_type or not target:
        raise argparse.ArgumentTypeError(f"{text!r} is not TYPE=GROUP")
    return server_type, target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", type=mapping, action="append", required=True)
    parser.add_argument("--region", help="the groups' region (default: the aws CLI's)")
    parser.add_argument("--aws", default="aws", help="how to call the aws CLI")
    parser.add_argument("--dry-run", action="store_true", help="say what, change nothing")
    args = parser.parse_args()

    types = json.load(sys.stdin)["types"]
    failed = False
    for server_type, group in args.group:
        if server_type not in types:
            print(f"no server type {server_type!r} in the queue's answer", file=sys.stderr)
            failed = True
            continue
        command = [*shlex.split(args.aws), "autoscaling", "set-desired-capacity"]
        command += ["--auto-scaling-group-name", group]
        command += ["--desired-capacity", str(types[server_type]["wanted"])]
        if args.region:
            command += ["--region", args.region]
        print(shlex.join(command))
        if not args.dry_run and subprocess.run(command).returncode != 0:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
