"""The worked examples of docs/PROTOCOL.md run against a real queue under gunicorn.

examples/clients/platform_client.py and grading_server_client.py use jwcrypto and requests
only; platform-request.sh uses bash, openssl and curl only, an implementation
of the token format that shares no code with the queue.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "clients"


@pytest.fixture
def served(sqlite_queue, tmp_path):
    return_port = free_port()
    platform = sqlite_queue.platform(
        "example-platform", return_url=f"http://127.0.0.1:{return_port}/"
    )
    key = tmp_path / "platform.pem"
    key.write_text(platform.private_pem)
    queue_pub = sqlite_queue.settings.resolved_key_dir / "graderqueue.pub.pem"
    node = sqlite_queue.gunicorn(workers=1, threads=8)
    args = [node.url, platform.name, str(key), str(queue_pub), sqlite_queue.settings.key_name]
    return node, args, return_port


def test_the_python_platform_and_grading_server(sqlite_queue, served):
    node, args, return_port = served
    platform = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "platform_client.py"), *args, str(return_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        token = sqlite_queue.server_token("t-c")
        # Wait for the job to be queued before the grading server polls once.
        first = platform.stdout.readline()
        if not first.startswith("sendjob"):
            first += platform.communicate(timeout=30)[0]
        assert first.startswith("sendjob: errorcode 0: Queued as job ID #1."), first
        grader = subprocess.run(
            [sys.executable, str(EXAMPLES / "grading_server_client.py"), node.url, token, "--once"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert grader.returncode == 0, grader.stdout + grader.stderr
        assert "got job #1 'api-sendjob'" in grader.stdout
        assert "sendresults: errorcode 0: Saved resultdata." in grader.stdout
        out, _ = platform.communicate(timeout=60)
    finally:
        if platform.poll() is None:
            platform.kill()
    assert platform.returncode == 0, out
    assert "job #1: status queued, priority 5" in out
    result_line = next(line for line in out.splitlines() if line.startswith("result of"))
    echoed = json.loads(result_line.split("): ", 1)[1])
    assert echoed["echo"]["taskPath"] == "$ROOT_PATH/tasks/sum"


def test_the_shell_client_with_openssl_and_curl(served):
    _node, args, _ = served

    def request(body: dict) -> dict:
        run = subprocess.run(
            ["bash", str(EXAMPLES / "platform-request.sh"), *args, json.dumps(body)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    queued = request({"request": "sendjob", "jobdata": {"taskPath": "/t"}, "tags": "c"})
    assert queued["errorcode"] == 0, queued
    row = request({"request": "getjob", "jobid": str(queued["jobid"])})
    assert row["origin"] == "queue" and row["data"]["status"] == "queued"
    refused = request({"request": "sendjob", "jobdata": {"taskPath": "/t"}, "tags": "nope"})
    assert refused == {"errorcode": 2, "errormsg": "Tag `nope` unrecognized."}
