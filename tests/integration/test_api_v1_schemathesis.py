"""Schemathesis against a live queue (gunicorn, both databases), from the OpenAPI
document alone, with an operator's token and with a platform's signed tokens:
every check it has (no server error, every answer and status as documented,
schema-valid requests accepted, schema-violating ones refused, stateful runs
following the document's links) must pass.

Documented exceptions, written in the config below: ``POST /jobs`` may
refuse a request the schema allows, because tags must name tags the queue
has (400) and an Idempotency-Key sent again with another body is refused
(422); ``POST /runs`` too, for its tags, its ``${VAR}`` that must be
defined and its callback URLs' hosts (400). None can be said in a static
schema.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_api_v1_auth import api_token

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[checks.positive_data_acceptance]
enabled = true

[[operations]]
include-operation-id = "submitJobs"
checks.positive_data_acceptance.expected-statuses = ["201", "400", "401", "403", "422"]

[[operations]]
include-operation-id = "submitRun"
checks.positive_data_acceptance.expected-statuses = ["201", "400", "401", "403"]

[[operations]]
include-operation-id = "jobEvents"
max-stream-events = 5

[[operations]]
include-operation-id = "runEvents"
max-stream-events = 5
"""


def run_schemathesis(url: str, workdir: Path, env: dict[str, str], extra: list[str]) -> str:
    (workdir / "schemathesis.toml").write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/api/v1/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "15",
        "--seed",
        "20261206",
        "--request-timeout",
        "20",
        *extra,
    ]
    done = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("caller", ["operator", "platform"])
def test_every_answer_conforms_to_the_document(queue, caller, tmp_path):
    platform = queue.platform("first")
    node = queue.gunicorn(
        workers=1,
        threads=16,
        GRADERQUEUE_EVENTS_MAX_SEC="0.5",
        GRADERQUEUE_EVENTS_POLL_SEC="0.1",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if caller == "operator":
        token = api_token(queue, "fuzz", "write")
        extra = ["--header", f"Authorization: Bearer {token}"]
    else:
        key = tmp_path / "platform.pem"
        key.write_text(platform.private_pem)
        env.update(
            SCHEMATHESIS_HOOKS="tests.integration.schemathesis_auth",
            GQ_PLATFORM_NAME="first",
            GQ_PLATFORM_KEY=str(key),
            GQ_AUDIENCE=queue.settings.key_name,
        )
        extra = []
    out = run_schemathesis(node.url, tmp_path, env, extra)
    assert "generated" in out, out[-3000:]  # it ran cases, not only loaded the document
    assert "unexpected error" not in node.log_text(), node.log_text()[-5000:]
