"""The floor's grading loop: long-poll a job, run the program on it, send the result back.

What any grading server of this protocol must do per job, with nothing
else: no health checks, no wake-up listener, no job-state checks, no
process-group bookkeeping. Same HTTP client (requests) and the same
``subprocess`` start as the graderserver's, so the difference to it is
what the graderserver adds.

Usage: ``python -m scripts.bench.floor_grader URL SERVER_TOKEN COMMAND_JSON``.
Runs until killed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import requests


def main(url: str, token: str, command: list[str]) -> None:
    session = requests.Session()
    while True:
        job = session.post(f"{url}/poll.php", data={"server_token": token}, timeout=60).json()
        if job.get("errorcode") != 0:
            continue
        run = subprocess.run(
            command, input=json.dumps(job["jobdata"]).encode(), capture_output=True, timeout=30
        )
        result = {"errorcode": 0, "errormsg": "", "jobdata": json.loads(run.stdout)}
        fields = {"jobid": job["jobid"], "resultdata": json.dumps(result), "server_token": token}
        session.post(f"{url}/sendresults.php", data=fields, timeout=60).raise_for_status()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
