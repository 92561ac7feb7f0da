"""Acceptance: the Python client examples of docs/PROTOCOL.md work against a real queue.

The examples under examples/clients/python/ are run as the documentation
shows them (separate processes, over real HTTP to a gunicorn on SQLite), so
the reference cannot drift from what the queue accepts. The Node examples
are not run here: CI may have no node.
"""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select, update

from harness import ROOT
from harness.processes import free_port
from harness.queue import QueueSetup

EXAMPLES = ROOT / "examples" / "clients" / "python"
# A stand-in grader run by the example: job JSON in, a result object out.
GRADER = shlex.join(
    [
        sys.executable,
        "-c",
        "import json, sys; job = json.load(sys.stdin); "
        "print(json.dumps({'seen': job['taskPath'], 'executions': []}))",
    ]
)


def run_example(name: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
    )


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_keys(queue: QueueSetup, tmp_path: Path, private_pem: str) -> tuple[str, str]:
    platform_key = tmp_path / "platform.pem"
    platform_key.write_text(private_pem)
    queue_pub = queue.settings.resolved_key_dir / f"{queue.settings.key_name}.pub.pem"
    return str(platform_key), str(queue_pub)


def start_receiver(platform_key: str, queue_pub: str) -> tuple[subprocess.Popen, int]:  # type: ignore[type-arg]
    """The return-URL example on a free port, once it says it listens.

    A free port may be taken by another test's server before the example
    binds it (the cause of a failure seen under load): then it exits with
    "Address already in use" and another port is tried.
    """
    for _attempt in range(5):
        port = free_port()
        receiver = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "return_url.py"), str(port), platform_key, queue_pub,
             "--count", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert receiver.stderr is not None
        first = receiver.stderr.readline()  # "listening on ...", or the bind error's traceback
        if first.startswith("listening on"):
            return receiver, port
        receiver.communicate()
    raise AssertionError(f"the return-URL example never listened: {first}")


def test_platform_and_grading_server_examples_round_trip(sqlite_queue: QueueSetup, tmp_path):  # type: ignore[no-untyped-def]
    from graderqueue.store.models import Delivery, DeliveryState, Platform

    queue = sqlite_queue
    platform = queue.platform("docs")
    token = queue.server_token("t-c", "docs-grader")
    platform_key, queue_pub = write_keys(queue, tmp_path, platform.private_pem)
    served = queue.gunicorn(workers=1, threads=8)
    receiver, port = start_receiver(platform_key, queue_pub)
    with queue.db.transaction() as session:
        session.execute(
            update(Platform)
            .where(Platform.name == "docs")
            .values(return_url=f"http://127.0.0.1:{port}/result")
        )
    try:
        sent = run_example("sendjob.py", served.url, "docs", platform_key, queue_pub, "--tags", "c")
        assert sent.returncode == 0, sent.stderr
        queued, read_back = json_lines(sent.stdout)
        assert queued["errorcode"] == 0
        assert queued["errormsg"] == f"Queued as job ID #{queued['jobid']}."
        assert read_back["errorcode"] == 0 and read_back["origin"] == "queue"
        assert read_back["data"]["id"] == queued["jobid"]
        assert read_back["data"]["name"] == "example-job"
        assert read_back["data"]["priority"] == 5
        assert read_back["data"]["tags"] == "c"

        graded = run_example("grading_server.py", served.url, token, "--once", "--command", GRADER)
        assert graded.returncode == 0, graded.stderr
        connected, job, saved = json_lines(graded.stdout)
        assert connected["errorcode"] == 0
        assert connected["errormsg"].startswith("Connected as server docs-grader-127.0.0.1")
        assert job["jobid"] == queued["jobid"]
        assert job["jobdata"]["taskPath"] == "$ROOT_PATH/tasks/example"
        assert saved == {"errorcode": 0, "errormsg": "Saved resultdata."}

        out, err = receiver.communicate(timeout=90)
        assert receiver.returncode == 0, err
        (result,) = json_lines(out)
        assert result["sTaskName"] == "example-job"
        assert result["sResultData"] == {"seen": "$ROOT_PATH/tasks/example", "executions": []}
        assert len(result["date"].split("-")) == 3
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.communicate()

    # The example's {"bSuccess": true} is what marks the result delivered.
    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        state = queue.scalar(select(Delivery.state).where(Delivery.job_id == queued["jobid"]))
        if state == DeliveryState.DELIVERED:
            break
        time.sleep(0.2)
    assert state == DeliveryState.DELIVERED


def test_sendjob_example_fresh_tokens(sqlite_queue: QueueSetup, tmp_path):  # type: ignore[no-untyped-def]
    """A platform that requires fresh tokens: the example's --fresh adds iat/exp/jti."""
    queue = sqlite_queue
    platform = queue.platform("docs-fresh", require_fresh=True)
    platform_key, queue_pub = write_keys(queue, tmp_path, platform.private_pem)
    served = queue.gunicorn(workers=1, threads=4)
    args = (served.url, "docs-fresh", platform_key, queue_pub, "--tags", "c")

    refused = run_example("sendjob.py", *args)
    assert refused.returncode == 1
    assert json_lines(refused.stdout) == [
        {
            "errorcode": 2,
            "errormsg": "Invalid token: this platform must send exp/iat and jti, or date.",
        }
    ]

    fresh = run_example("sendjob.py", *args, "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert [a["errorcode"] for a in json_lines(fresh.stdout)] == [0, 0]


def test_grading_server_example_stops_on_bad_credentials(sqlite_queue: QueueSetup):
    served = sqlite_queue.gunicorn(workers=1, threads=4)
    refused = run_example("grading_server.py", served.url, "not-a-registered-token", "--once")
    assert refused.returncode == 1
    assert json_lines(refused.stdout) == [
        {"errorcode": 3, "errormsg": "No valid authentication provided."}
    ]


def test_the_reference_shows_each_example_unchanged():
    doc = (ROOT / "docs" / "PROTOCOL.md").read_text()
    examples = sorted((ROOT / "examples" / "clients").rglob("*.*js")) + sorted(
        EXAMPLES.glob("*.py")
    )
    assert len(examples) == 5
    for path in examples:
        assert path.read_text() in doc, f"docs/PROTOCOL.md does not show {path} as it is"


# The modules whose refusals reach protocol clients (not the CLI-only ones).
ANSWERING_MODULES = [
    "errors.py",
    "store/db.py",
    "protocol/*.py",
    "queue/enqueue.py",
    "queue/claim.py",
    "queue/complete.py",
    "queue/lookup.py",
    "queue/routing.py",
    "identity/platforms.py",
    "identity/servers.py",
    "dispatch/longpoll.py",
    "web/answers.py",
    "web/platform_api.py",
    "web/server_api.py",
]


def _default_messages() -> dict[str, str]:
    """Each QueueError class's own message: its docstring's first line."""
    tree = ast.parse((ROOT / "graderqueue" / "errors.py").read_text())
    return {
        node.name: (ast.get_docstring(node) or "").splitlines()[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }


def _messages(tree: ast.AST, defaults: dict[str, str]) -> list[str]:
    """Texts given to answer(...) or to a QueueError class (its default when given none).

    For an f-string, its text up to the first placeholder.
    """
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", "")
        if name in defaults and not node.args:
            found.append(defaults[name])
            continue
        if (name == "success" and node.args) or name in defaults:
            arg = node.args[0]
        else:
            continue
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.append(arg.value)
        elif isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
            found.append(str(arg.values[0].value))
    return found


def test_the_reference_lists_every_error_message():
    doc = (ROOT / "docs" / "PROTOCOL.md").read_text().replace("\\`", "`")
    defaults = _default_messages()
    missing = []
    modules = [path for glob in ANSWERING_MODULES for path in (ROOT / "graderqueue").glob(glob)]
    assert len(modules) >= len(ANSWERING_MODULES)
    for path in modules:
        tree = ast.parse(path.read_text())
        for message in _messages(tree, defaults):
            if message.strip() and message not in doc:
                missing.append(f"{path.relative_to(ROOT)}: {message!r}")
    assert not missing, "docs/PROTOCOL.md lacks:\n" + "\n".join(missing)


def test_the_shell_client_with_openssl_and_curl(sqlite_queue: QueueSetup, tmp_path):  # type: ignore[no-untyped-def]
    """A token built byte by byte by openssl, sent by curl: no JOSE library involved."""
    platform = sqlite_queue.platform("shell-platform")
    key, queue_pub = write_keys(sqlite_queue, tmp_path, platform.private_pem)
    node = sqlite_queue.gunicorn(workers=1, threads=4)
    script = ROOT / "examples" / "clients" / "platform-request.sh"
    args = [node.url, platform.name, key, queue_pub, sqlite_queue.settings.key_name]

    def request(body: dict) -> dict:
        run = subprocess.run(
            ["bash", str(script), *args, json.dumps(body)],
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
