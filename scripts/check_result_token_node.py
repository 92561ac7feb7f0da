"""Check that Node's ``jose`` opens the queue's result tokens with its default settings.

Optional and run by hand (no test needs node): makes result tokens of several
sizes the way the delivery worker does (``result_zip_max_bytes`` at its
default), and, for comparison, compressed whatever their size (the rule
before it), then opens them with ``scripts/check_result_token_node.mjs``::

    mkdir /tmp/jose && (cd /tmp/jose && npm install jose@5)
    .venv/bin/python scripts/check_result_token_node.py --jose-dir /tmp/jose

Exit status 0 when every token made by the current rule opened.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from datetime import date
from pathlib import Path

from jwcrypto import jwk

from graderqueue.config import Settings
from graderqueue.protocol import keys, results, tokens
from graderqueue.protocol.keys import QueueKey

HERE = Path(__file__).resolve().parent
SIZES = {"10k": 10_000, "240k": 240_000, "535k": 535_000, "2m": 2_000_000}


def grader_output(size: int, seed: int = 1) -> dict:
    """A grader's result of about ``size`` bytes of JSON: test reports with program output."""
    rng = random.Random(seed)
    reports: list[dict] = []
    data = {"executions": [{"name": "exec", "testsReports": reports}], "score": 42}
    while tokens.result_json_bytes(data) < size:
        output = "".join(rng.choice("abcdefghij 0123456789\n") for _ in range(400))
        reports.append({"name": f"test{len(reports):05d}", "checker": {"output": output}})
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jose-dir", required=True, help="a folder where `npm install jose` ran")
    args = parser.parse_args()
    queue_private, queue_public = keys.generate_rsa_pem()
    platform_private, platform_public = keys.generate_rsa_pem()
    queue_key = QueueKey("graderqueue", jwk.JWK.from_pem(queue_private), queue_public.decode())
    found: dict[str, str] = {}
    for name, size in SIZES.items():
        payload = results.result_payload(
            f"job-{name}", json.dumps({"jobdata": grader_output(size)}), date.today()
        )
        pem = platform_public.decode()
        found[f"{name} current rule"] = results.result_token(
            payload, queue_key, "plat", pem, Settings.result_zip_max_bytes
        )
        found[f"{name} always zip"] = results.result_token(payload, queue_key, "plat", pem, None)
    request = {
        "queue_public_pem": queue_public.decode(),
        "platform_private_pem": platform_private.decode(),  # PKCS#8
        "tokens": found,
    }
    run = subprocess.run(
        ["node", str(HERE / "check_result_token_node.mjs")],
        input=json.dumps(request),
        cwd=args.jose_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stdout.write(run.stdout + run.stderr)
    refused = [line for line in run.stdout.splitlines() if "current rule: REFUSED" in line]
    return 1 if refused or "current rule" not in run.stdout else 0


if __name__ == "__main__":
    sys.exit(main())
