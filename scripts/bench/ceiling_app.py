"""The enqueue ceiling: a bare Flask endpoint that only opens a platform token.

It decrypts (RSA-OAEP-256 + A256CBC-HS512, deflate) and verifies (RS512) the
same ``sToken`` the queue gets, with jwcrypto, and answers like sendjob does.
No database, no routing: what is left of a sendjob when the queue does
nothing but crypto and framework work. Keys come from the environment:
``BENCH_QUEUE_KEY`` (the queue's private PEM file) and
``BENCH_PLATFORM_PUB`` (the platform's public PEM file).
"""

from __future__ import annotations

import json
import os

from flask import Flask, Response, request
from jwcrypto import jwe, jwk, jws

with open(os.environ["BENCH_QUEUE_KEY"], "rb") as fh:
    QUEUE_KEY = jwk.JWK.from_pem(fh.read())
with open(os.environ["BENCH_PLATFORM_PUB"], "rb") as fh:
    PLATFORM_KEY = jwk.JWK.from_pem(fh.read())
jwe.default_max_compressed_size = 1024 * 1024
jwe.default_max_plaintext_size = 1024 * 1024

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


def open_request(token: str) -> dict:
    """Decrypt and verify a platform's ``sToken``: the protocol's whole cost of a request."""
    outer = jwe.JWE(algs=["RSA-OAEP-256", "A256CBC-HS512"])
    outer.deserialize(token, key=QUEUE_KEY)
    inner = jws.JWS()
    inner.allowed_algs = ["RS512"]
    inner.deserialize(outer.payload.decode("ascii"))
    inner.verify(PLATFORM_KEY, alg="RS512")
    return json.loads(inner.payload)


@app.post("/api.php")
def api() -> Response:
    payload = open_request(request.form["sToken"])
    body = {"errorcode": 0, "errormsg": "Queued.", "jobid": len(payload)}
    return Response(json.dumps(body), mimetype="application/json")
