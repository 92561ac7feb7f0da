#!/usr/bin/env python3
"""A toy grading program for the demo: job JSON on stdin, taskgrader-shaped result on stdout.

It runs the job's Python solution (``extraParams.solutionContent``) on each
test input and compares the output with the expected one. A real deployment
runs the taskgrader instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time


def main() -> int:
    job = json.load(sys.stdin)
    params = job.get("extraParams", {})
    source = params.get("solutionContent", "")
    reports = []
    for test in job.get("tests", [{"input": "", "output": ""}]):
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-c", source],
            input=test["input"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        elapsed = int((time.monotonic() - started) * 1000)
        ok = run.returncode == 0 and run.stdout.strip() == test["output"].strip()
        reports.append(
            {
                "name": test.get("name", "test"),
                "execution": {
                    "timeTakenMs": elapsed,
                    "realTimeTakenMs": elapsed,
                    "stdout": {"data": run.stdout[:1000]},
                    "exitCode": run.returncode,
                },
                "checker": {"stdout": {"data": "100" if ok else "0"}, "timeTakenMs": 0},
            }
        )
    json.dump({"executions": [{"name": "demo", "testsReports": reports}]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
