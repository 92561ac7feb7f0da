"""A minimal grading server for graderqueue: poll, run, report; with a server token.

    python grading_server_client.py QUEUE_URL SERVER_TOKEN [--once]

It "grades" by echoing the job back (a real one runs a program with the job
JSON on stdin: see graderserver/ for the full daemon). Needs: pip install requests.
"""

from __future__ import annotations

import json
import sys
import time

import requests


def main() -> int:
    url, token, *flags = sys.argv[1:]
    once = "--once" in flags
    held = 0
    while True:
        # nbtasks=0 tells the queue we hold nothing: anything it thinks we hold goes back.
        answer = requests.post(
            f"{url}/poll.php", data={"server_token": token, "nbtasks": held}, timeout=60
        ).json()
        if answer["errorcode"] == 3:
            print(f"authentication failed: {answer['errormsg']}")
            return 1
        if answer["errorcode"] != 0:  # 1: nothing now (the poll already waited)
            if once:
                return 0
            time.sleep(1)
            continue
        print(f"got job #{answer['jobid']} {answer['jobname']!r}")
        resultdata = {"errorcode": 0, "errormsg": "", "jobdata": {"echo": answer["jobdata"]}}
        reply = requests.post(
            f"{url}/sendresults.php",
            data={
                "server_token": token,
                "jobid": answer["jobid"],
                "resultdata": json.dumps(resultdata),
            },
            timeout=60,
        ).json()
        print(f"sendresults: errorcode {reply['errorcode']}: {reply['errormsg']}")
        if once:
            return 0


if __name__ == "__main__":
    sys.exit(main())
