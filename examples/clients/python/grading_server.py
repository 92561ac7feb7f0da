#!/usr/bin/env python3
"""A minimal grading server loop with a server token (docs/PROTOCOL.md).

poll (long-poll, nbtasks=0 while idle) -> run the job -> sendresults.
The real daemon is `graderserver`; this shows the wire protocol only.

    python3 grading_server.py https://queue.example.org TOKEN --once --command taskgrader

Without a command, a stand-in grader answers a fixed taskgrader-like report.
Prints one JSON line per answer from the queue.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time

import requests

FAKE_REPORT = {
    "executions": [
        {
            "testsReports": [
                {
                    "execution": {"timeTakenMs": 12, "realTimeTakenMs": 20},
                    "checker": {"stdout": {"data": "100"}},
                }
            ]
        }
    ]
}


def post(url: str, form: dict, timeout: float) -> dict:
    answer = requests.post(url, data=form, timeout=timeout).json()
    print(json.dumps(answer), flush=True)
    return answer


def grade(command: list[str], jobdata: dict) -> dict:
    """resultdata: errorcode 0 with the grader's output, or 2 (temporary failure)."""
    if not command:
        return {"errorcode": 0, "errormsg": "", "jobdata": FAKE_REPORT}
    done = subprocess.run(command, input=json.dumps(jobdata), capture_output=True, text=True)
    try:
        return {"errorcode": 0, "errormsg": "", "jobdata": json.loads(done.stdout)}
    except ValueError:
        return {"errorcode": 2, "errormsg": done.stderr[-1000:]}


def send_results(base: str, token: str, jobid: int, resultdata: dict) -> dict:
    form = {"server_token": token, "jobid": str(jobid), "resultdata": json.dumps(resultdata)}
    for attempt in range(3):  # network faults only; a protocol answer is final
        try:
            return post(f"{base}/sendresults.php", form, timeout=30)
        except requests.RequestException:
            if attempt == 2:
                raise
            time.sleep(3)
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue_url")
    parser.add_argument("server_token")
    parser.add_argument("--once", action="store_true", help="exit after one job")
    parser.add_argument(
        "--command", default="", help="grader command: job JSON on stdin, result on stdout"
    )
    args = parser.parse_args()
    base = args.queue_url.rstrip("/")

    if post(f"{base}/test.php", {"server_token": args.server_token}, 30)["errorcode"] != 0:
        sys.exit(1)
    while True:
        try:
            # The queue holds the request up to poll_wait_sec (20 s): wait longer.
            answer = post(
                f"{base}/poll.php", {"server_token": args.server_token, "nbtasks": "0"}, 60
            )
        except requests.RequestException:
            time.sleep(5)  # the queue is unreachable: try again
            continue
        if answer["errorcode"] == 1:
            if answer["errormsg"] != "No job available.":
                time.sleep(5)  # a quick refusal (queue busy, too many jobs): back off
            continue  # no job within the long-poll: poll again at once
        if answer["errorcode"] != 0:
            sys.exit(1)  # 2 or 3: fix the configuration, do not hammer the queue
        resultdata = grade(shlex.split(args.command), answer["jobdata"])
        send_results(base, args.server_token, answer["jobid"], resultdata)
        if args.once:
            return


if __name__ == "__main__":
    main()
