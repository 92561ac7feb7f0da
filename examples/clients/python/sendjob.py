#!/usr/bin/env python3
"""A platform sends a job to a graderqueue and reads it back (docs/PROTOCOL.md).

The raw steps, with jwcrypto and requests only (no graderqueue import):
sign the request as a JWS (RS512, kid = platform name), encrypt that JWS
as a JWE to the queue's public key (RSA-OAEP-256, A256CBC-HS512, zip DEF,
kid = queue key name), POST it as sToken with sPlatform, read the JSON answer.

    python3 sendjob.py https://queue.example.org myplatform platform.pem queue.pub.pem \
        --queue-kid graderqueue --tags c --jobusertaskid sub-42

Prints each answer as one JSON line; exits 1 if the queue refuses a request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import requests
from jwcrypto import jwe, jwk, jws


def request_token(
    request: dict, platform_name: str, platform_key: jwk.JWK, queue_key: jwk.JWK, queue_kid: str
) -> str:
    # 1. The request's fields, as a JSON object, signed by the platform.
    signer = jws.JWS(json.dumps(request).encode())
    signer.add_signature(platform_key, None, json.dumps({"alg": "RS512", "kid": platform_name}))
    inner = signer.serialize(compact=True)
    # 2. That compact JWS, encrypted to the queue.
    header = {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "zip": "DEF", "kid": queue_kid}
    outer = jwe.JWE(inner.encode(), json.dumps(header))
    outer.add_recipient(queue_key)
    return outer.serialize(compact=True)


def call(args: argparse.Namespace, request: dict) -> dict:
    if args.fresh:
        # Only needed when the queue registered the platform with --require-fresh.
        now = int(time.time())
        request = {**request, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    with open(args.platform_key, "rb") as f:
        platform_key = jwk.JWK.from_pem(f.read())
    with open(args.queue_public_key, "rb") as f:
        queue_key = jwk.JWK.from_pem(f.read())
    token = request_token(request, args.platform, platform_key, queue_key, args.queue_kid)
    # 3. A plain form POST; protocol answers are always HTTP 200 with JSON.
    response = requests.post(
        args.queue_url.rstrip("/") + "/api.php",
        data={"sToken": token, "sPlatform": args.platform},
        timeout=30,
    )
    response.raise_for_status()
    answer = response.json()
    print(json.dumps(answer), flush=True)
    if answer["errorcode"] != 0:
        sys.exit(1)
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue_url")
    parser.add_argument("platform", help="the platform's registered name")
    parser.add_argument("platform_key", help="the platform's private key (PEM)")
    parser.add_argument("queue_public_key", help="the queue's public key (PEM)")
    parser.add_argument("--queue-kid", default="graderqueue", help="the queue's key name")
    parser.add_argument("--tags", default="")
    parser.add_argument("--jobusertaskid", default="")
    parser.add_argument("--fresh", action="store_true", help="add iat/exp/jti")
    args = parser.parse_args()

    job = {"taskPath": "$ROOT_PATH/tasks/example", "extraParams": {"solutionContent": "..."}}
    request = {
        "request": "sendjob",
        "jobdata": json.dumps(job),  # a JSON string, as the original clients send it
        "jobname": "example-job",
        "priority": 5,
        "tags": args.tags,
        "jobusertaskid": args.jobusertaskid or f"example-{uuid.uuid4().hex}",
    }
    jobid = call(args, request)["jobid"]
    call(args, {"request": "getjob", "jobid": str(jobid)})


if __name__ == "__main__":
    main()
