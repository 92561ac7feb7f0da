#!/usr/bin/env python3
"""A `graderqueue autoscale --hook` for Kubernetes: sets the replicas of one
Deployment of grading servers per server type.

    graderqueue autoscale --hook "/path/to/kubectl-scale.py -n grading \
        --deployment general=graderserver-general --deployment gpu=graderserver-gpu"

`kubectl scale` is run for every mapped type at every call: setting the
number it already has changes nothing. Give the pods a
terminationGracePeriodSeconds above the grading program's timeout: on a
scale-down, graderserver finishes its running jobs after SIGTERM. Pods have
addresses of their own, so one server token serves a whole Deployment.

Standard library only; kubectl uses its usual configuration (KUBECONFIG, or
the pod's service account when this runs in the cluster). Exit status 1 when
a kubectl call fails.
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
        raise argparse.ArgumentTypeError(f"{text!r} is not TYPE=DEPLOYMENT")
    return server_type, target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployment", type=mapping, action="append", required=True)
    parser.add_argument("-n", "--namespace", help="the Deployments' namespace")
    parser.add_argument("--kubectl", default="kubectl", help="how to call kubectl")
    parser.add_argument("--dry-run", action="store_true", help="say what, change nothing")
    args = parser.parse_args()

    types = json.load(sys.stdin)["types"]
    failed = False
    for server_type, deployment in args.deployment:
        if server_type not in types:
            print(f"no server type {server_type!r} in the queue's answer", file=sys.stderr)
            failed = True
            continue
        command = [*shlex.split(args.kubectl), "scale", f"deployment/{deployment}"]
        command += [f"--replicas={types[server_type]['wanted']}"]
        if args.namespace:
            command += ["--namespace", args.namespace]
        print(shlex.join(command))
        if not args.dry_run and subprocess.run(command).returncode != 0:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
